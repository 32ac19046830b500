"""Training progress: a tqdm bar on a terminal, plain log lines with the time left otherwise."""

from __future__ import annotations

import logging

from ignite.engine import Engine
from samzoo.engine import TrainingProgress


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
