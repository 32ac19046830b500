"""Training progress: a tqdm bar on a terminal, plain log lines with the time left otherwise."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events
from samzoo.engine import TrainingProgress, progress


def _engine() -> Engine:
    return Engine(lambda e, batch: [{"loss": 1.0 / e.state.iteration}])


def test_log_lines_when_not_a_terminal(caplog):
    engine = _engine()
    TrainingProgress(interval=1e6, tty=False).attach(engine)
    with caplog.at_level(logging.INFO, logger="samzoo.engine.progress"):
        engine.run([0] * 3, max_epochs=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "samzoo.engine.progress"]
    assert len(lines) == 2  # one per epoch end with a long interval
    assert lines[0].startswith("epoch 1/2, iteration 3/3: loss 0.3333,") and lines[0].endswith("left")
    assert lines[1].startswith("epoch 2/2, iteration 3/3: loss 0.1667,") and "0:00:00 left" in lines[1]
    assert "\r" not in "".join(lines)

    caplog.clear()
    engine = _engine()
    TrainingProgress(interval=0.0, tty=False).attach(engine)
    with caplog.at_level(logging.INFO, logger="samzoo.engine.progress"):
        engine.run([0] * 3, max_epochs=2)
    assert len([r for r in caplog.records if r.name == "samzoo.engine.progress"]) == 6


def test_bar_on_a_terminal_shows_iterations_and_loss(capsys):
    engine = _engine()
    TrainingProgress(tty=True).attach(engine)
    engine.run([0] * 3, max_epochs=2)
    err = capsys.readouterr().err
    assert "Epoch [2/2]" in err and "[3/3]" in err and "loss=0.167" in err


def test_rate_is_the_current_epochs_and_time_left_counts_end_of_epoch_work(caplog, monkeypatch):
    """A slow first epoch (10 s/iteration, e.g. filling a cache) must not skew later estimates; validation (5 s
    after every epoch) is part of the time left."""
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])

    def step(engine: Engine, batch: int) -> list[dict[str, float]]:
        clock[0] += 10.0 if engine.state.epoch == 1 else 2.0
        return [{"loss": 1.0}]

    engine = Engine(step)
    TrainingProgress(interval=1e6, tty=False).attach(engine)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda _: clock.__setitem__(0, clock[0] + 5.0))
    with caplog.at_level(logging.INFO, logger="samzoo.engine.progress"):
        engine.run([0] * 4, max_epochs=3)
    lines = [r.getMessage() for r in caplog.records if r.name == "samzoo.engine.progress"]
    assert [line.split(": loss 1.0000, ")[1] for line in lines] == [
        "10.00 s/iteration, 0:01:20 left",  # 8 iterations at 10 s; no validation timed yet
        "2.00 s/iteration, 0:00:18 left",  # 4 iterations at 2 s + 2 validations of 5 s
        "2.00 s/iteration, 0:00:05 left",  # the last validation
    ]
