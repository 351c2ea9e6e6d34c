"""The archive provider: Tardis.dev downloadable CSV day files.

Files live at `<base_url>/v1/<exchange>/<data_type>/<YYYY>/<MM>/<DD>/<SYMBOL>.csv.gz`
(the archive's own exchange id and symbol; `api_key` goes as a bearer token). Each UTC
day of a range is one file, streamed: downloaded, gunzipped and parsed row by row on a
worker thread (`obd.history.csvbook`), so memory holds one book, never a day. A
connection cut mid-file resumes with an HTTP Range request; 429 and 5xx are retried
(429 after its `Retry-After`); a day the archive lacks (404), a refused key, a
truncated or corrupt file leave that day's slots `Unserved` with the reason. With
`cache_dir`, finished files are kept on disk (oldest dropped past `cache_mib`) and
read from there next time.

Why the standard library (urllib) and not an HTTP package: obd has no HTTP client
dependency at run time (httpx is a test dependency; aiohttp comes only with ccxt),
and a blocking client on a worker thread streams a file as well as any.

obd's exchange ids and unified symbols are mapped to the archive's by the tables
below (docs/HISTORY.md lists them); `[history.tardis] exchanges` adds or overrides
exchange ids, and a symbol without `/` is passed as the archive's own.
"""

import asyncio
import contextlib
import email.utils
import gzip
import http.client
import io
import os
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import structlog

from obd import __version__
from obd.config import Tardis
from obd.errors import HistoryNotAvailable
from obd.history import csvbook
from obd.history.provider import HistoryRequest, Item, ProviderSpec, Served, Unserved
from obd.history.pull import pulled

__all__ = ["EXCHANGES", "PROVIDER", "TardisArchive", "archive_symbol"]

log = structlog.get_logger("obd.history.tardis")

DAY_MS = 86_400_000
CHUNK = 64 * 1024  # bytes read from the network at a time
PROBED_DAYS = 3  # days of a gap a probe asks about (HEAD each)

# obd (ccxt) exchange id -> (the archive's id for spot, for derivatives, symbol style).
# Styles: "concat" BTCUSDT, "dash" BTC-USDT, "slash" XBT/USD (files: XBT-USD).
EXCHANGES: dict[str, tuple[str | None, str | None, str]] = {
    "binance": ("binance", None, "concat"),
    "binanceusdm": (None, "binance-futures", "concat"),
    "binancecoinm": (None, "binance-delivery", "concat"),
    "bybit": ("bybit-spot", "bybit", "concat"),
    "okx": ("okex", "okex-swap", "dash"),
    "coinbase": ("coinbase", None, "dash"),
    "kraken": ("kraken", None, "slash"),
    "bitstamp": ("bitstamp", None, "concat"),
    "bitfinex": ("bitfinex", "bitfinex-derivatives", "concat"),
    "deribit": (None, "deribit", "dash"),
    "bitmex": (None, "bitmex", "concat"),
    "kucoin": ("kucoin", None, "dash"),
    "gateio": ("gate-io", "gate-io-futures", "underscore"),
    "huobi": ("huobi", "huobi-dm-swap", "concat"),
}
_KRAKEN_ASSETS = {"BTC": "XBT", "DOGE": "XDG"}  # the archive keeps Kraken's own names


def archive_symbol(style: str, symbol: str, derivative: bool) -> str:
    """The archive's symbol for a unified one (`BTC/USDT`, `BTC/USDT:USDT`)."""
    if "/" not in symbol:
        return symbol  # already the archive's own
    base, _, rest = symbol.partition("/")
    quote, _, settle = rest.partition(":")
    if style == "slash":
        base = _KRAKEN_ASSETS.get(base, base)
        return f"{base}/{quote}"
    if style == "dash":
        return f"{base}-{quote}-SWAP" if derivative and settle else f"{base}-{quote}"
    if style == "underscore":
        return f"{base}_{quote}"
    if derivative and settle == base:  # inverse perpetual (binance-delivery)
        return f"{base}{quote}_PERP"
    return f"{base}{quote}"


def file_symbol(symbol: str) -> str:
    """How the archive names a symbol's file (`XBT/USD` -> `XBT-USD`)."""
    return symbol.replace("/", "-").replace(":", "-").upper()


class ArchiveError(Exception):
    """A file could not be had; `why` says so in a line."""


class Missing(ArchiveError):
    """The archive has no such file (404)."""


class TardisArchive:
    """`[history.tardis]` as a provider."""

    def __init__(self, options: Tardis) -> None:
        self.options = options
        self._base = options.base_url.rstrip("/")
        self.cache = Path(options.cache_dir) if options.cache_dir else None

    def locate(self, exchange: str, symbol: str) -> tuple[str, str]:
        """(the archive's exchange id, its symbol) for obd's; HistoryNotAvailable if none."""
        derivative = ":" in symbol
        if (named := self.options.exchanges.get(exchange)) is not None:
            style = EXCHANGES.get(exchange, (None, None, "concat"))[2]
            return named, archive_symbol(style, symbol, derivative)
        if exchange not in EXCHANGES:
            raise HistoryNotAvailable(
                f"the archive's exchange id for {exchange!r} is unknown; "
                "name it in [history.tardis] exchanges"
            )
        spot, derivatives, style = EXCHANGES[exchange]
        archive_id = derivatives if derivative else spot
        if "/" not in symbol:  # the archive's own symbol: whichever market kind it has
            archive_id = spot or derivatives
        if archive_id is None:
            kind = "derivatives" if derivative else "spot markets"
            raise HistoryNotAvailable(f"the archive has no {kind} of {exchange}")
        return archive_id, archive_symbol(style, symbol, derivative)

    async def probe(self, request: HistoryRequest) -> str | None:
        """Whether the archive has a file for one of the range's first days (HEAD)."""
        archive_id, symbol = self.locate(request.exchange, request.symbol)
        return await asyncio.to_thread(self._probe_days, archive_id, symbol, request)

    def _probe_days(self, archive_id: str, symbol: str, request: HistoryRequest) -> str | None:
        whys: list[str] = []
        day = request.start - request.start % DAY_MS
        for _ in range(PROBED_DAYS):
            if day >= request.end:
                break
            date = datetime.fromtimestamp(day / 1000, UTC)
            for data_type in self.options.data_types:
                path = f"{archive_id}/{data_type}/{date:%Y/%m/%d}/{file_symbol(symbol)}.csv.gz"
                if self.cache is not None and (self.cache / path).is_file():
                    return None
                status = self._head(f"{self._base}/v1/{path}")
                if status < 300:
                    return None
                whys.append(f"{date:%Y-%m-%d} {data_type}: {status}")
            day += DAY_MS
        return f"the archive has no file for {archive_id} {symbol} ({', '.join(whys)})"

    def _head(self, url: str) -> int:
        """The file's status without its body: HEAD, or a one-byte GET where HEAD is not
        served (405, 501)."""
        status = self._status(url, "HEAD")
        return self._status(url, "GET") if status in (405, 501) else status

    def _status(self, url: str, method: str) -> int:
        headers = {"User-Agent": f"obd/{__version__}", "Range": "bytes=0-0"}
        if self.options.api_key:
            headers["Authorization"] = f"Bearer {self.options.api_key}"
        request = urllib.request.Request(url, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.options.timeout_s) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HistoryNotAvailable(f"cannot reach the archive: {reason}") from None

    async def history(self, request: HistoryRequest) -> AsyncIterator[Item]:
        archive_id, symbol = self.locate(request.exchange, request.symbol)
        day = request.start - request.start % DAY_MS
        while day < request.end:
            lo, hi = max(request.start, day), min(request.end, day + DAY_MS)
            async for item in self._day(archive_id, symbol, day, lo, hi, request):
                yield item
            day += DAY_MS

    async def _day(
        self, archive_id: str, symbol: str, day: int, lo: int, hi: int, request: HistoryRequest
    ) -> AsyncIterator[Item]:
        """The slots [lo, hi) of one UTC day, from the first file the archive has."""
        items = pulled(lambda: self._day_items(archive_id, symbol, day, lo, hi, request))
        async with contextlib.aclosing(items):
            async for item in items:
                yield item

    def _day_items(
        self, archive_id: str, symbol: str, day: int, lo: int, hi: int, request: HistoryRequest
    ) -> Iterator[Item]:
        """On a worker thread: open the day's file, parse it, say why not if it fails."""
        date = datetime.fromtimestamp(day / 1000, UTC)
        where = f"{archive_id} {symbol} {date:%Y-%m-%d}"
        whys: list[str] = []
        for data_type in self.options.data_types:
            path = f"{archive_id}/{data_type}/{date:%Y/%m/%d}/{file_symbol(symbol)}.csv.gz"
            try:
                body = self._open(path)
            except Missing:
                whys.append(f"no {data_type}")
                continue
            except ArchiveError as exc:
                yield Unserved(lo, hi, f"{where}: {exc}")
                return
            label = "tardis" if data_type == "incremental_book_L2" else f"tardis:{data_type}"
            yield from self._parse(body, data_type, lo, hi, request, label, where)
            return
        yield Unserved(lo, hi, f"the archive has no file for {where} ({', '.join(whys)}: 404)")

    def _parse(
        self,
        body: IO[bytes],
        data_type: str,
        lo: int,
        hi: int,
        request: HistoryRequest,
        label: str,
        where: str,
    ) -> Iterator[Item]:
        served_until = lo
        try:
            with body, gzip.GzipFile(fileobj=body) as unzipped:
                lines = io.TextIOWrapper(unzipped, encoding="utf-8", newline="")
                if data_type == "incremental_book_L2":
                    books = csvbook.l2_books(
                        lines, lo, hi, request.interval_ms, request.depth, label
                    )
                else:
                    books = csvbook.snapshot_books(lines, lo, hi, request.interval_ms, label)
                for item in books:
                    if isinstance(item, Served):
                        served_until = item.slot + request.interval_ms
                    else:
                        served_until = item.end
                    yield item
                if isinstance(body, _Download):
                    body.finish()
        except (EOFError, OSError, zlib.error, UnicodeDecodeError, csvbook.CorruptFile) as exc:
            why = _file_problem(exc)
            log.warning("archive_file_failed", file=where, error=why)
            if not isinstance(body, _Download):  # a cached copy that is bad: fetch it again
                with contextlib.suppress(OSError):
                    Path(body.name).unlink()
            if served_until < hi:
                yield Unserved(served_until, hi, f"{where}: {why}")

    def _open(self, path: str) -> IO[bytes]:
        """The file's bytes: from the cache, or streamed from the archive."""
        if self.cache is not None and (cached := self.cache / path).is_file():
            os.utime(cached)  # the cache drops the least recently used first
            return cached.open("rb")
        download = _Download(self, f"{self._base}/v1/{path}", self._cache_file(path))
        return cast(IO[bytes], download)

    def _cache_file(self, path: str) -> Path | None:
        return None if self.cache is None else self.cache / path

    def request(self, url: str, offset: int) -> http.client.HTTPResponse:
        """GET `url` from byte `offset` on, through 429s (after Retry-After) and 5xx."""
        headers = {"User-Agent": f"obd/{__version__}", "Accept-Encoding": "identity"}
        if self.options.api_key:
            headers["Authorization"] = f"Bearer {self.options.api_key}"
        if offset:
            headers["Range"] = f"bytes={offset}-"
        last = ""
        for attempt in range(self.options.retries + 1):
            try:
                response: http.client.HTTPResponse = urllib.request.urlopen(
                    urllib.request.Request(url, headers=headers), timeout=self.options.timeout_s
                )
                return response
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code == 404:
                    raise Missing("404") from None
                if exc.code in (401, 403):
                    raise ArchiveError(
                        f"the archive refused the request ({exc.code}): check "
                        "[history.tardis] api_key"
                    ) from None
                if exc.code == 429:
                    wait = _retry_after(exc.headers.get("Retry-After"))
                    if wait > self.options.max_retry_after_s:
                        raise ArchiveError(
                            f"rate limited (429): the archive asks to wait {wait:.0f} s"
                        ) from None
                    last = "rate limited (429)"
                elif exc.code >= 500:
                    wait, last = min(2.0**attempt, 30.0), f"the archive failed ({exc.code})"
                else:
                    raise ArchiveError(f"the archive answered {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                wait, last = min(2.0**attempt, 30.0), f"cannot reach the archive: {reason}"
            if attempt < self.options.retries:
                log.info("archive_retry", url=url, why=last, wait_s=wait)
                time.sleep(wait)
        raise ArchiveError(f"{last}, {self.options.retries + 1} tries")

    async def close(self) -> None:
        return None


class _Download(io.RawIOBase):
    """A file's bytes as they arrive; a connection cut mid-file is resumed with a Range
    request (or read again and skipped, if the server ignores Range); with a cache,
    the bytes also go to `<file>.part`, renamed into place once whole."""

    def __init__(self, archive: TardisArchive, url: str, cache: Path | None) -> None:
        self._archive = archive
        self._url = url
        self._offset = 0
        self._response = archive.request(url, 0)
        self._length = _length(self._response)
        self._cache = cache
        self._part: IO[bytes] | None = None
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            self._part = cache.with_name(cache.name + ".part").open("wb")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        for attempt in range(self._archive.options.retries + 1):
            try:
                count = self._response.readinto(view[: min(len(view), CHUNK)])
                if count == 0 and self._length is not None and self._offset < self._length:
                    raise http.client.IncompleteRead(b"", self._length - self._offset)
                break
            except (http.client.HTTPException, OSError) as exc:
                if attempt == self._archive.options.retries:
                    raise OSError(f"download cut at byte {self._offset}: {exc}") from None
                log.info("archive_resume", url=self._url, offset=self._offset, error=str(exc))
                self._resume()
        if self._part is not None:
            self._part.write(view[:count])
        self._offset += count
        return count

    def finish(self) -> None:
        """The file parsed whole (or enough of it): read the rest into the cache."""
        if self._part is None:
            return
        while self.readinto(bytearray(CHUNK)):
            pass
        self._keep()

    def _resume(self) -> None:
        self._response.close()
        response = self._archive.request(self._url, self._offset)
        if response.status != 206:  # Range ignored: the whole file again, skip what we have
            skip = self._offset
            while skip > 0:
                got = len(response.read(min(skip, CHUNK)))
                if got == 0:
                    raise OSError("the file got shorter while resuming")
                skip -= got
        self._response = response

    def _keep(self) -> None:
        """The file is whole: the cached copy takes its place (and the cache its cap)."""
        if self._part is None or self._cache is None:
            return
        self._part.close()
        self._part = None
        self._cache.with_name(self._cache.name + ".part").replace(self._cache)
        _trim(self._archive)

    def close(self) -> None:
        if self._part is not None:  # incomplete: no cached copy
            self._part.close()
            self._part = None
            with contextlib.suppress(OSError):
                assert self._cache is not None
                self._cache.with_name(self._cache.name + ".part").unlink()
        self._response.close()
        super().close()


def _trim(archive: TardisArchive) -> None:
    """Drop the least recently used cached files until the cache fits `cache_mib`."""
    root = archive.cache
    if root is None:
        return
    files = [(p.stat().st_mtime, p.stat().st_size, p) for p in root.rglob("*.csv.gz")]
    total = sum(size for _, size, _ in files)
    cap = archive.options.cache_mib * 1024 * 1024
    for _, size, path in sorted(files):
        if total <= cap:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size
            log.info("archive_cache_dropped", file=str(path), bytes=size)


def _length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _retry_after(value: str | None) -> float:
    """Seconds to wait: `Retry-After` as seconds or an HTTP date (1 s if absent)."""
    if not value:
        return 1.0
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return 1.0


def _file_problem(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the file is truncated (the gzip stream ends early)"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"the file is corrupt (not valid gzip: {exc})"
    if isinstance(exc, csvbook.CorruptFile):
        return f"the file is corrupt ({exc})"
    if isinstance(exc, UnicodeDecodeError):
        return "the file is corrupt (not UTF-8 text)"
    return f"the download failed ({exc})"


PROVIDER = ProviderSpec(
    name="tardis",
    factory=TardisArchive,
    options=Tardis,
    description="Tardis.dev downloadable CSV day files (incremental_book_L2, book_snapshot_N)",
)
