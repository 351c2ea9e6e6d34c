"""`ccxt`: one plugin for every exchange ccxt knows (binance, kraken, okx, bybit, ...).

Live books come from ccxt.pro's `watch_order_book` where the exchange has a
websocket order book; where it has none (or `live = false`), `watch` raises
`NoLiveStream` and the kernel takes a REST snapshot (`fetch_book`) at each slot.

ccxt neither reconnects nor backs off, so obd does: the kernel's sampler retries
with capped, jittered backoff, and this package adds what only it can see:
- a hook on each websocket client's frames (`watcher`): a change to a watched
  book is yielded the moment ccxt applied it, and a frame that changed nothing
  (a pong, another symbol's diff) re-yields the same book as a heartbeat, which
  lets the kernel tell a quiet book from a dead feed;
- integrity checks ccxt does not make (`checks`): a frame whose checksum or
  sequence proves the book wrong throws it away and resyncs;
- a staleness watchdog on the websocket: no frame at all (not even a pong to
  ccxt's pings) for `stale_after_s` means the connection is dead;
- a range guard (`books.Range`): a book kept from a REST snapshot plus diffs is
  complete only between the snapshot's deepest levels;
- an exchange-wide pause after a 429;
- ccxt's errors mapped to obd's (`errors`), which the kernel records as gap reasons.

Everything that touches ccxt beyond its documented API is in `internals`.
ccxt costs ~1.5 s and ~110 MiB to import and cannot load one exchange alone, so
it is imported only when a ccxt exchange is first used, in a worker thread so
the event loop keeps serving. No module here imports it at module level.
"""

import functools
import importlib.util
import re
from pathlib import Path

from obd.plugin import PluginSpec

from .exchange import CcxtExchange
from .options import CcxtOptions

__all__ = ["PLUGIN", "CcxtExchange", "CcxtOptions", "create", "exchange_ids", "serves"]

_ID = re.compile(r"[a-z][a-z0-9]{1,40}")


@functools.cache
def _ccxt_root() -> Path | None:
    """Where the ccxt package lives, found without importing it."""
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def serves(exchange_id: str) -> bool:
    """Whether ccxt has an exchange with this id (a file check: nothing imported)."""
    root = _ccxt_root()
    return bool(
        root
        and _ID.fullmatch(exchange_id)
        and (root / "async_support" / f"{exchange_id}.py").is_file()
    )


@functools.cache
def exchange_ids() -> list[str]:
    """Every exchange id ccxt has, from its file names (nothing imported)."""
    root = _ccxt_root()
    if root is None:
        return []
    found = (path.stem for path in (root / "async_support").glob("*.py"))
    return sorted(name for name in found if _ID.fullmatch(name))


def create(exchange_id: str, options: CcxtOptions | None) -> CcxtExchange:
    """The plugin's factory; ccxt itself is imported at first use, not here."""
    return CcxtExchange(exchange_id, options or CcxtOptions())


PLUGIN = PluginSpec(
    name="ccxt",
    factory=create,
    options=CcxtOptions,
    serves=serves,
    exchange_ids=exchange_ids,
    description=(
        "Real exchanges through ccxt: live books over websockets (ccxt.pro), REST"
        " snapshots where there is none. Serves every ccxt exchange id."
    ),
)
