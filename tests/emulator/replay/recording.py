"""The recording format, and its reader: JSON lines, optionally zstd-compressed.

One entry a line; a header first, then entries in time order (`ts`, epoch seconds):

    {"t": "header", "exchange": "BINANCE", "config": {"l2_book": ["BTCUSDT"]}, ...}
    {"t": "http", "ts": 1723161296.1, "url": "https://...", "data": "<response body>"}
    {"t": "connect" | "send" | "recv", "conn": "<id>", "ts": 1723161296.2, "data": "<frame>"}

`recv` data is the exchange's websocket frame exactly as received; `send` is what
the recorder sent; `connect` data is the websocket URL. The header may carry more
keys (`source`, `licence`, `derived`, ...); they are kept in `Header.meta`.

A line the reader cannot take (bad JSON, an unknown `t`, a missing or mistyped
field, a header anywhere but first) is a `RecordingError` naming the file and the
1-based line, raised while loading: the emulator refuses to serve, never hangs.
"""

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec
import zstandard

__all__ = [
    "Entry",
    "Header",
    "Http",
    "Recording",
    "RecordingError",
    "WsEntry",
    "load",
    "read",
]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class RecordingError(ValueError):
    """A recording that cannot be replayed; the message names the file and line."""

    def __init__(self, path: Path | str, line: int, why: str) -> None:
        super().__init__(f"{path}:{line}: {why}")
        self.path, self.line, self.why = str(path), line, why


class Header(msgspec.Struct, frozen=True):
    """The first line: which exchange, what the recorder subscribed to, and the rest."""

    line: int
    exchange: str
    config: dict[str, Any]
    meta: dict[str, Any]  # every other header key (source, licence, derived, ...)


class Http(msgspec.Struct, frozen=True):
    """A REST answer the recorder got: `data` is the response body."""

    line: int
    ts: float
    url: str
    data: str


class WsEntry(msgspec.Struct, frozen=True):
    """A websocket event on connection `conn`: its opening (data: the URL), a frame
    the recorder sent, or a frame it received (byte for byte)."""

    line: int
    kind: Literal["connect", "send", "recv"]
    conn: str
    ts: float
    data: str


Entry = Header | Http | WsEntry


class Recording(msgspec.Struct, frozen=True):
    """A whole recording in memory (the test slices are a few MB at most)."""

    path: str
    header: Header
    http: list[Http]
    ws: list[WsEntry]  # connect/send/recv in file order

    @property
    def recv(self) -> list[WsEntry]:
        return [entry for entry in self.ws if entry.kind == "recv"]


def load(path: Path | str) -> Recording:
    """Read a whole recording, or raise `RecordingError` at its first bad line."""
    entries = iter(read(path))
    header = next(entries, None)
    if not isinstance(header, Header):
        raise RecordingError(path, 1, "empty recording: no header line")
    http: list[Http] = []
    ws: list[WsEntry] = []
    for entry in entries:
        if isinstance(entry, Http):
            http.append(entry)
        elif isinstance(entry, WsEntry):
            ws.append(entry)
    return Recording(str(path), header, http, ws)


def read(path: Path | str) -> Iterator[Entry]:
    """Stream the entries of a recording (zstd or plain), checking each line."""
    number = 0
    for number, text in enumerate(_lines(Path(path)), start=1):
        if not text.strip():
            raise RecordingError(path, number, "empty line")
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise RecordingError(path, number, f"not JSON: {exc}") from None
        yield _entry(path, number, raw)
    if number == 0:
        raise RecordingError(path, 1, "empty recording: no header line")


def _lines(path: Path) -> Iterator[str]:
    with path.open("rb") as raw:
        compressed = raw.read(4) == _ZSTD_MAGIC
        raw.seek(0)
        if not compressed:
            yield from (line.decode() for line in raw)
            return
        with zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            yield from io.TextIOWrapper(stream, encoding="utf-8")


def _entry(path: Path | str, number: int, raw: Any) -> Entry:
    if not isinstance(raw, dict):
        raise RecordingError(path, number, "not a JSON object")
    kind = raw.get("t")
    if (kind == "header") != (number == 1):
        why = "the header must be the first line" if number > 1 else "the first line is no header"
        raise RecordingError(path, number, f'{why} (t = "{kind}")')
    if kind == "header":
        exchange = _field(path, number, raw, "exchange", str)
        config = _field(path, number, raw, "config", dict)
        meta = {k: v for k, v in raw.items() if k not in ("t", "exchange", "config")}
        return Header(number, exchange, config, meta)
    if kind == "http":
        ts = _field(path, number, raw, "ts", (int, float))
        return Http(
            number, float(ts), _field(path, number, raw, "url", str), _data(path, number, raw)
        )
    if kind in ("connect", "send", "recv"):
        conn = str(_field(path, number, raw, "conn", (str, int)))
        ts = float(_field(path, number, raw, "ts", (int, float)))
        return WsEntry(number, kind, conn, ts, _data(path, number, raw))
    raise RecordingError(path, number, f"unknown entry type t = {kind!r}")


def _data(path: Path | str, number: int, raw: dict[str, Any]) -> str:
    # Some recorders store a frame already parsed; it is replayed as compact JSON.
    data = _field(path, number, raw, "data", (str, dict, list))
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


def _field(path: Path | str, number: int, raw: dict[str, Any], name: str, kind: Any) -> Any:
    if name not in raw:
        raise RecordingError(path, number, f"{raw.get('t')} entry lacks {name!r}")
    value = raw[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RecordingError(path, number, f"{name!r} has the wrong type: {value!r:.60}")
    return value
