"""``isskit.progress``: bars refresh normally on a terminal and rarely in a log or pipe."""

from __future__ import annotations

import io
import itertools

import pytest
import tqdm.std

from isskit.progress import NON_TTY_INTERVAL, progress_bar


class _Log(io.StringIO):
    """What a CI log or a pipe looks like to tqdm: not a terminal."""

    def isatty(self) -> bool:
        return False


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """A fake clock for tqdm: each call of ``clock.tick(s)`` moves it ``s`` seconds on."""

    class Clock:
        now = 1_000.0

        def __call__(self) -> float:
            return self.now

        def tick(self, seconds: float) -> None:
            self.now += seconds

    c = Clock()
    monkeypatch.setattr(tqdm.std, "time", c)
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)  # no thread on the real clock
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    return c


def _run(stream, clock, steps: int, seconds_per_step: float, **kw) -> int:
    """Simulate ``steps`` updates, each ``seconds_per_step`` long; count the redraws."""
    with progress_bar(total=steps, desc="work", unit="image", file=stream, **kw) as bar:
        for _ in range(steps):
            clock.tick(seconds_per_step)
            bar.update(1)
    return stream.getvalue().count("\r")


def test_log_refreshes_rarely(clock):
    # ten simulated minutes, one update a second: plain tqdm redraws 600 times
    log = _Log()
    redraws = _run(log, clock, steps=600, seconds_per_step=1.0, leave=False)
    assert 600 / NON_TTY_INTERVAL - 2 <= redraws <= 600 / NON_TTY_INTERVAL + 2
    text = log.getvalue()
    # the final state stays in the log as one line (leave is forced on), not a line of blanks
    assert text.endswith("\n") and "600/600" in text.splitlines()[-1]


def test_terminal_refreshes_normally(clock):
    redraws = _run(_Terminal(), clock, steps=600, seconds_per_step=1.0)
    assert redraws >= 600


def test_short_work_writes_nothing_to_a_log(clock):
    log = _Log()
    _run(log, clock, steps=1000, seconds_per_step=0.001)  # one simulated second
    assert log.getvalue() == ""


def test_disabled_bar_passes_items_through_and_writes_nothing(clock, capsys):
    items = list(progress_bar(range(5), desc="x", unit="y", enabled=False))
    bar = progress_bar(total=3, desc="x", unit="y", enabled=False)
    bar.update(3)
    bar.close()
    assert items == list(range(5))
    assert capsys.readouterr() == ("", "")


def test_iterable_passes_through_and_goes_to_stderr(clock, capsys):
    out = []
    for i in progress_bar(itertools.islice(itertools.count(), 50), total=50, desc="scan",
                          unit="chunk"):
        clock.tick(1.0)
        out.append(i)
    assert out == list(range(50))
    captured = capsys.readouterr()
    assert captured.out == ""  # never on stdout, which may carry a JSON object
    assert "scan" in captured.err and "50/50" in captured.err


def test_environment_sets_the_log_interval(clock, monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "60")
    redraws = _run(_Log(), clock, steps=600, seconds_per_step=1.0)
    assert redraws <= 600 / 60 + 2
