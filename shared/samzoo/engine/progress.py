"""Training progress on the console: iterations, loss and the time left.

On a terminal, ignite's :class:`~ignite.handlers.ProgressBar` (tqdm) draws one bar per epoch, kept when the epoch
ends, with the loss and the epoch's remaining time; log records printed while a bar is open pass above it
(tqdm's logging redirect). tqdm redraws its bar with carriage returns, which pile up into one unreadable line in a
log file or a CI console, so when stderr is not a terminal (or tqdm is not installed) the same information is
logged as a plain line every ``interval`` seconds and at the end of each epoch, with the time left for the whole
run. The line's rate is the current epoch's, so a slow first epoch (an embedding cache being filled, say) does not
skew it; the time left adds the last epoch's end-of-epoch work (validation, checkpoints) to every epoch still to
end.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from monai.handlers import from_engine

__all__ = ["TrainingProgress"]

logger = logging.getLogger(__name__)


class TrainingProgress:
    """Show a trainer's progress: a tqdm bar on a terminal, log lines otherwise (see the module docstring).

    Args:
        output_transform: the loss from the engine's output (default: ``loss`` of the first item).
        interval: seconds between two log lines when not on a terminal (lines also end every epoch).
        tty: draw bars (True) or log lines (False); None draws bars when stderr is a terminal and tqdm is installed.
    """

    def __init__(
        self,
        output_transform: Callable[[Any], Any] | None = None,
        interval: float = 30.0,
        tty: bool | None = None,
    ) -> None:
        self.output_transform = output_transform or from_engine(["loss"], first=True)
        self.interval = interval
        self.tty = (sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None) if tty is None else tty
        self._redirect = contextlib.ExitStack()
        self._last_line = self._last_bar = 0.0
        self._epoch_start = self._last_iteration_end = 0.0
        self._epoch_first_iteration = 0
        self._epoch_end_seconds = 0.0
        self._bar_loss = float("nan")

    def loss(self, output: Any) -> float:
        return float(self.output_transform(output))

    def attach(self, engine: Engine) -> None:
        if self.tty:
            ProgressBar(persist=True).attach(engine, output_transform=lambda output: self._bar_postfix(engine, output))
            engine.add_event_handler(Events.STARTED, self._redirect_logging)
            engine.add_event_handler(Events.COMPLETED, lambda _: self._redirect.close())
        else:
            engine.add_event_handler(Events.STARTED, self._started)
            engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._log_line)

    def _bar_postfix(self, engine: Engine, output: Any) -> dict[str, float]:
        """The loss shown on the bar, read from the device at most once a second and at the end of each epoch:
        reading it every iteration would wait for the GPU at every step."""
        now = time.perf_counter()
        if now - self._last_bar >= 1.0 or engine.state.iteration % engine.state.epoch_length == 0:
            self._bar_loss, self._last_bar = self.loss(output), now
        return {"loss": self._bar_loss}

    def _redirect_logging(self, engine: Engine) -> None:
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._redirect.enter_context(logging_redirect_tqdm())

    def _started(self, engine: Engine) -> None:
        self._last_line = time.perf_counter()
        self._last_iteration_end = 0.0

    def _epoch_started(self, engine: Engine) -> None:
        now = time.perf_counter()
        if self._last_iteration_end:
            self._epoch_end_seconds = now - self._last_iteration_end
        self._epoch_start = now
        self._epoch_first_iteration = engine.state.iteration

    def _log_line(self, engine: Engine) -> None:
        state = engine.state
        now = self._last_iteration_end = time.perf_counter()
        within_epoch = (state.iteration - 1) % state.epoch_length + 1
        if within_epoch < state.epoch_length and now - self._last_line < self.interval:
            return
        self._last_line = now
        per_iteration = (now - self._epoch_start) / max(state.iteration - self._epoch_first_iteration, 1)
        epochs_left = state.max_epochs - state.epoch
        iterations_left = state.epoch_length - within_epoch + epochs_left * state.epoch_length
        left = iterations_left * per_iteration + (epochs_left + 1) * self._epoch_end_seconds
        logger.info(
            "epoch %d/%d, iteration %d/%d: loss %.4f, %.2f s/iteration, %s left",
            state.epoch,
            state.max_epochs,
            within_epoch,
            state.epoch_length,
            self.loss(state.output),
            per_iteration,
            datetime.timedelta(seconds=round(left)),
        )
