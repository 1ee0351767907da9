"""Pacing of retry loops (radostdb/retry.py) on a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import replay

from radostdb import retry


@pytest.fixture
def ctx() -> Iterator[replay.Context]:
    with replay.harness(0) as c:  # virtual time; jitter factor 1.0 (the top of its range)
        yield c


def test_free_retries_then_exponential_pauses_up_to_the_max(ctx: replay.Context) -> None:
    pace = retry.Pace(None, lambda waited: AssertionError("no limit"))
    for _ in range(12):
        pace.wait()
    assert ctx.clock.slept[:4] == [0.002, 0.004, 0.008, 0.016]
    assert len(ctx.clock.slept) == 10  # the first two retries are free
    assert max(ctx.clock.slept) == retry.MAX_PAUSE


def test_jitter_shortens_a_pause_by_at_most_half(
    ctx: replay.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retry.random, "uniform", lambda a, b: a)
    pace = retry.Pace(None, lambda waited: AssertionError(), free=0)
    pace.wait()
    pace.wait()
    assert ctx.clock.slept == [retry.FIRST_PAUSE / 2, retry.FIRST_PAUSE]


def test_gives_up_past_the_limit_with_the_callers_error(ctx: replay.Context) -> None:
    waited: list[float] = []

    def give_up(w: float) -> Exception:
        waited.append(w)
        return TimeoutError("gave up")

    pace = retry.Pace(0.05, give_up)
    with pytest.raises(TimeoutError, match="gave up"):
        for _ in range(100):
            ctx.clock.advance(0.001)  # the call retried takes a millisecond
            pace.wait()
    # 2 free retries, pauses of 2, 4, 8, 16 ms, the last one cut to the limit
    assert ctx.clock.slept[:4] == [0.002, 0.004, 0.008, 0.016]
    assert ctx.clock.slept[4] == pytest.approx(0.05 - 0.007 - 0.030)  # 7 tries, 4 pauses
    assert pace.retries == 7
    assert waited == [pytest.approx(0.051)]


def test_a_retry_after_the_limit_gives_up_at_once(ctx: replay.Context) -> None:
    pace = retry.Pace(1.0, lambda w: TimeoutError(w))
    ctx.clock.advance(1.5)
    with pytest.raises(TimeoutError):
        pace.wait()
    assert pace.expired() and ctx.clock.slept == [] and pace.retries == 0
