import pytest

from obd.errors import BadRequest
from obd.times import (
    format_interval,
    parse_interval,
    parse_time,
    slot_at_or_after,
    slot_at_or_before,
)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1s", 1000),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        (60_000, 60_000),
        ("2000", 2000),
        ("1500ms", None),
    ],
)
def test_parse_interval(text: object, ms: int | None) -> None:
    if ms is None:
        with pytest.raises(BadRequest, match="whole number of seconds"):
            parse_interval(text)
    else:
        assert parse_interval(text) == ms
        assert parse_interval(format_interval(ms)) == ms


@pytest.mark.parametrize(
    "bad", ["7x", "0", 0, -5, "-1s", "", "5 m m", True, 1.5, None, "2d", "999999999h"]
)
def test_parse_interval_rejects(bad: object) -> None:
    with pytest.raises(BadRequest, match="interval"):
        parse_interval(bad)


def test_parse_time() -> None:
    assert parse_time("2026-11-25T12:00:00Z", "start") == 1_795_608_000_000
    assert parse_time("2026-11-25T12:00:00", "start") == 1_795_608_000_000
    assert parse_time("2026-11-25T13:00:00+01:00", "start") == 1_795_608_000_000
    assert parse_time(1_795_608_000_000, "start") == 1_795_608_000_000
    assert parse_time("1795608000000", "start") == 1_795_608_000_000
    for bad in ("yesterday", "-5", -5, True, 1.5, "9" * 20, None):
        with pytest.raises(BadRequest, match="start"):
            parse_time(bad, "start")


def test_slots() -> None:
    assert slot_at_or_after(1000, 1000) == 1000
    assert slot_at_or_after(1001, 1000) == 2000
    assert slot_at_or_before(1999, 1000) == 1000


def test_parse_time_relative_to_now(monkeypatch: pytest.MonkeyPatch) -> None:
    from obd import times

    monkeypatch.setattr(times, "now_ms", lambda: 1_795_608_000_000)
    assert parse_time("now", "start") == 1_795_608_000_000
    assert parse_time(" NOW ", "start") == 1_795_608_000_000
    assert parse_time("-6h", "start") == 1_795_608_000_000 - 6 * 3_600_000
    assert parse_time("-1d", "end") == 1_795_608_000_000 - 86_400_000
    assert parse_time("-2w", "end") == 1_795_608_000_000 - 14 * 86_400_000
    assert parse_time("-90s", "end") == 1_795_608_000_000 - 90_000
    for bad in ("+1h", "-1y", "now-1h", "-h"):
        with pytest.raises(BadRequest, match=r"start: expected .* relative to now"):
            parse_time(bad, "start")


def test_iso() -> None:
    from obd.times import iso

    assert iso(1_767_225_600_000) == "2026-01-01T00:00:00Z"
    assert iso(1_767_225_600_123) == "2026-01-01T00:00:00.123Z"
    assert parse_time(iso(1_767_225_600_123), "start") == 1_767_225_600_123


@pytest.mark.parametrize("text", ["\u00b2", "\u0663", "--5", "-\u00b2h", "1\u00b2"])
def test_only_ascii_digits_are_numbers(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_time(text, "start")
    with pytest.raises(BadRequest):
        parse_interval(text)
