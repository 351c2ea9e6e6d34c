"""`obd status`: the status page for a terminal. Asks the running daemon over HTTP (the
same `/v1/coins` and `/v1/coverage/grid` the page reads) and prints the coins table and
one coverage bar a coin for the last 24 h, in Unicode blocks."""

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlencode

from obd.config import Config
from obd.errors import Unavailable

__all__ = ["BAR_BUCKET", "BAR_SPAN", "bar", "daemon_url", "render", "show"]

BAR_SPAN = "24h"
BAR_BUCKET = "30m"  # 48 characters a bar
BAR_BUCKET_MS = 1_800_000
BAR_SPAN_MS = 86_400_000
_BLOCKS = "▁▂▃▄▅▆"  # a share of slots present below 99 %, low to high (▇: 99 % and more)
_FULL, _ALMOST, _NONE_OWED, _NONE_PRESENT = "█", "▇", "·", "×"
_UNOWED = ("pending", "not_collected")  # slots nobody could have collected yet

Fetch = Callable[[str], Any]


def daemon_url(config: Config) -> str:
    """The daemon's address from `[server]`: a wildcard host is asked on loopback."""
    host, port = config.server.host, config.server.port
    if port == 0:
        raise Unavailable("[server] port is 0 (chosen at start): pass --url http://HOST:PORT")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def fetcher(base: str, token: str | None, timeout_s: float = 10) -> Fetch:
    """GET a path of the daemon as JSON; its errors as one-line Unavailables."""

    def fetch(path: str) -> Any:
        request = urllib.request.Request(base.rstrip("/") + path)
        request.add_header("Accept", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise Unavailable(_refusal(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unavailable(f"no obd daemon answers at {base} ({reason})") from None

    return fetch


def _refusal(exc: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = exc.reason
    if exc.code == 401:
        return f"the daemon needs a token (--token or $OBD_TOKEN; `obd token`): {message}"
    return f"the daemon answered {exc.code}: {message}"


def show(fetch: Fetch, out: TextIO = sys.stdout) -> None:
    now = _now_ms()
    start = (now // BAR_BUCKET_MS - BAR_SPAN_MS // BAR_BUCKET_MS + 1) * BAR_BUCKET_MS
    coins = fetch("/v1/coins")["items"]
    grids = []
    for coin in coins:
        query = {"exchange": coin["exchange"], "symbol": coin["symbol"]}
        query |= {"start": str(start), "bucket": BAR_BUCKET}
        grids.append(fetch(f"/v1/coverage/grid?{urlencode(query)}"))
    out.write(render(coins, grids, now))


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def render(coins: list[dict[str, Any]], grids: list[dict[str, Any]], now: int) -> str:
    """The coins table, then a coverage bar a coin (`grids` in the order of `coins`)."""
    if not coins:
        return "no coins collected (obd coins add EXCHANGE SYMBOL, or POST /v1/coins)\n"
    header = ("EXCHANGE", "SYMBOL", "INTERVAL", "DEPTH", "STATUS", "AGE", "COUNT", "LAST (UTC)")
    rows: list[tuple[str, ...]] = [header]
    rows += [
        (
            c["exchange"],
            c["symbol"],
            c["interval"],
            str(c["depth"]),
            c["status"],
            _age(c, now),
            f"{c['count']:,}",
            _time(c["last_ts"]),
        )
        for c in coins
    ]
    lines = _columns(rows)
    lines += [
        "",
        f"coverage, last {BAR_SPAN} to now (a character = {BAR_BUCKET}; {_FULL} all slots, "
        f"{_ALMOST}…{_BLOCKS[0]} fewer, {_NONE_PRESENT} none, {_NONE_OWED} not collected yet):",
    ]
    labels = [f"{c['exchange']} {c['symbol']}" for c in coins]
    width = max(len(label) for label in labels)
    for label, grid in zip(labels, grids, strict=True):
        lines.append(f"{label.ljust(width)}  {bar(grid['buckets'])}  {_totals(grid['buckets'])}")
    return "\n".join(lines) + "\n"


def bar(buckets: list[dict[str, Any]]) -> str:
    return "".join(_block(bucket) for bucket in buckets)


def _block(bucket: dict[str, Any]) -> str:
    owed = _owed(bucket)
    if owed <= 0:
        return _NONE_OWED
    share = min(1.0, bucket["present"] / owed)
    if share >= 1:
        return _FULL
    if share >= 0.99:
        return _ALMOST
    if share <= 0:
        return _NONE_PRESENT
    return _BLOCKS[min(len(_BLOCKS) - 1, int(share * len(_BLOCKS)))]


def _owed(bucket: dict[str, Any]) -> int:
    reasons = bucket.get("reasons") or {}
    return int(bucket["expected"]) - sum(int(reasons.get(name, 0)) for name in _UNOWED)


def _totals(buckets: list[dict[str, Any]]) -> str:
    owed = sum(max(0, _owed(b)) for b in buckets)
    present = sum(int(b["present"]) for b in buckets)
    reasons: dict[str, int] = {}
    for b in buckets:
        for name, slots in (b.get("reasons") or {}).items():
            if name not in _UNOWED:
                reasons[name] = reasons.get(name, 0) + int(slots)
    share = "   -   " if owed <= 0 else f"{100 * min(present, owed) / owed:6.2f}%"
    missed = ", ".join(f"{name} {slots:,}" for name, slots in sorted(reasons.items()))
    return share + (f"  gaps: {missed}" if missed else "")


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _age(coin: dict[str, Any], now: int) -> str:
    last = coin.get("last_ts")
    if last is None:
        return "none yet"
    seconds = max(0, now - int(last)) / 1000
    text = (
        f"{seconds:.0f}s"
        if seconds < 120
        else f"{seconds / 60:.0f}m"
        if seconds < 7_200
        else f"{seconds / 3600:.1f}h"
    )
    stale = seconds * 1000 > 3 * int(coin["interval_ms"]) + 30_000  # as /readyz decides
    return text + (" STALE" if stale else "")


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
