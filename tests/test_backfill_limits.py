"""The daemon's shared back-fill meters (`obd/service/backfill_limits.py`): rows a
minute and back-fills at once, per client and in all, each refusal naming its
`[history]` key and when to ask again."""

from obd.config import History
from obd.service.backfill_limits import BackfillMeter


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _meter(clock: _Clock, **limits: int) -> BackfillMeter:
    return BackfillMeter(History(**limits), clock)


def _fetch(meter: BackfillMeter, client: str, rows: int) -> int:
    """Rows fetched for `client` until a meter says no (at most `rows`)."""
    for n in range(rows):
        if meter.check(client) is not None:
            return n
        meter.spend(client)
    return rows


def test_rows_a_minute_per_client_refill_and_say_when() -> None:
    clock = _Clock()
    meter = _meter(clock, backfill_rows_per_minute_per_client=100, backfill_rows_per_minute=1000)
    assert _fetch(meter, "a", 500) == 100  # a minute's rows at once
    refused = meter.check("a")
    assert refused is not None
    assert "backfill_rows_per_minute_per_client" in str(refused)
    assert refused.retry_after_s == 6  # a tenth of the minute's rows back
    assert _fetch(meter, "b", 50) == 50  # another client has its own
    clock.now += 6
    assert _fetch(meter, "a", 500) == 10
    clock.now += 60
    assert _fetch(meter, "a", 500) == 100  # never more than a minute's worth banked


def test_rows_a_minute_in_all() -> None:
    clock = _Clock()
    meter = _meter(clock, backfill_rows_per_minute_per_client=100, backfill_rows_per_minute=150)
    assert _fetch(meter, "a", 100) == 100
    assert _fetch(meter, "b", 100) == 50
    refused = meter.check("c")
    assert refused is not None
    assert "backfill_rows_per_minute)" in str(refused)
    assert refused.retry_after_s == 6


def test_zero_rows_a_minute_is_no_back_fill() -> None:
    meter = _meter(_Clock(), backfill_rows_per_minute_per_client=0)
    refused = meter.check("a")
    assert refused is not None
    assert refused.retry_after_s is None
    assert "back-fill is off" in str(refused)


def test_back_fills_at_once_per_client_and_in_all() -> None:
    meter = _meter(_Clock(), backfill_concurrent_per_client=1, backfill_concurrent=2)
    assert meter.begin("a") is None
    busy = meter.begin("a")
    assert busy is not None
    assert "backfill_concurrent_per_client" in str(busy)
    assert busy.retry_after_s == 5
    assert meter.begin("b") is None
    full = meter.begin("c")
    assert full is not None
    assert "backfill_concurrent)" in str(full)
    meter.end("a")
    assert meter.begin("c") is None
    assert meter.begin("a") is not None  # in all: b and c run
