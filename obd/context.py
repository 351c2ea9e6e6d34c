"""The composition root: assembles a process's parts from the config (plugins, store,
collector, service) and holds the start-up rules every entry point shares."""

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import apsw
import structlog

from obd.collect import Collector
from obd.config import Config
from obd.errors import BadRequest, ConfigError, Conflict, NotFound, ObdError, StoreError
from obd.exchanges import Exchanges
from obd.exchanges.discovery import Plugins, discover
from obd.history.registry import Providers
from obd.metrics import Metrics
from obd.service import Service, vet_coin
from obd.storage import schema
from obd.storage.access import check_database_path, database_path_problem
from obd.storage.connect import open_reader
from obd.storage.reader import Reader
from obd.storage.writer import Committed, Writer

__all__ = [
    "CHECKPOINT_INTERVAL_S",
    "Runtime",
    "add_config_coins",
    "check_bind_allowed",
    "check_database_file",
    "check_signing_key",
    "database_problems",
    "load_plugins",
    "open_runtime",
    "open_service",
    "start_checks",
    "vet_config_coins",
]

log = structlog.get_logger("obd")

CHECKPOINT_INTERVAL_S = 60  # the main file alone is at most this far behind the WAL


def load_plugins(config: Config) -> Plugins:
    registry = discover(
        config.plugin_dirs,
        use_entry_points=config.plugins.entry_points,
        optional_dirs=config.plugins.dirs is None,
    )
    for warning in registry.warnings:
        log.warning("plugin_warning", warning=warning)
    for found in registry.found:
        if found.error:
            log.warning("plugin_failed", plugin=found.name, origin=found.origin, error=found.error)
    return registry


class Runtime:
    """What a process runs: the service every transport calls, and the parts only the
    process's owner wires (the live feed's hookup, the background jobs)."""

    def __init__(
        self,
        service: Service,
        *,
        exchanges: Exchanges,
        reader: Reader,
        writer: Writer,
        collector: Collector | None,
    ) -> None:
        self.service = service
        self.exchanges = exchanges
        self.reader = reader
        self.writer = writer
        self.collector = collector  # None unless asked for (`obd run`, `obd mcp --collect`)

    @property
    def metrics(self) -> Metrics:
        """The process's instruments: the writer counts into them, /metrics shows them."""
        return self.writer.metrics

    def on_commit(self, listener: Committed) -> None:
        """`listener` hears of snapshots once they are committed (the live hub)."""
        self.writer.on_commit(listener)

    def background(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """The jobs to run, by task name, for as long as the process serves."""
        jobs: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "checkpoint": lambda: self.writer.checkpoint_every(CHECKPOINT_INTERVAL_S)
        }
        if self.collector is not None:
            jobs["collector"] = self.collector.run
        return jobs


@asynccontextmanager
async def open_runtime(
    config: Config, *, collector_started_ms: int | None = None, plugins: Plugins | None = None
) -> AsyncIterator[Runtime]:
    """The parts over the configured file, with its writer running. With
    `collector_started_ms` a collector is built too; the caller runs `background()`."""
    exchanges = Exchanges(plugins or load_plugins(config), config.exchanges)
    exchanges.check_options()
    writer = Writer(config.database, queue_bytes=config.storage.queue_mib * 1024 * 1024)
    await writer.open()
    read = Reader(config.database)
    collector = (
        None if collector_started_ms is None else Collector(exchanges, writer, collector_started_ms)
    )
    providers = Providers(config.history, exchanges, config.base_dir)
    service = Service(
        exchanges,
        read,
        writer,
        collector,
        default_interval=config.collection.interval,
        default_depth=config.collection.depth,
        history=config.history,
        low_disk_bytes=config.storage.low_disk_mib * 1024 * 1024,
        providers=providers,
    )
    writing = asyncio.create_task(writer.run(), name="writer")
    try:
        yield Runtime(service, exchanges=exchanges, reader=read, writer=writer, collector=collector)
    finally:
        await writer.stop()
        await writing
        await writer.close()
        read.close()
        await providers.close()
        await exchanges.close()


@asynccontextmanager
async def open_service(config: Config) -> AsyncIterator[Service]:
    """The service of a short-lived process (a CLI command): nothing runs beside it."""
    async with open_runtime(config) as runtime:
        yield runtime.service


def start_checks(config: Config, plugins: Plugins) -> list[Callable[[], None]]:
    """What `obd run` checks before it opens anything, in its order; each raises an
    ObdError with the one line the CLI prints. `obd check` runs the same list (and
    `vet_config_coins`, which needs the exchanges) and reports every failure."""
    return [
        lambda: check_bind_allowed(config),
        Exchanges(plugins, config.exchanges).check_options,
        Providers(config.history, Exchanges(plugins, {}), config.base_dir).check,
        lambda: check_database_path(config.database),
        lambda: check_database_file(config.database),
        lambda: check_signing_key(config),
    ]


def check_signing_key(config: Config) -> None:
    """An existing key file must be readable, private and an EC key; a missing one is
    made on first start, so its directory must take it."""
    if not config.auth.enabled:
        return
    path = config.signing_key_path
    if path.exists():
        from obd.auth.tokens import signing_key

        signing_key(config)
    elif config.auth.algorithm == "ES256" and (problem := database_path_problem(path)):
        raise ConfigError(f"auth.key_file: {problem}")


async def vet_config_coins(exchanges: Exchanges, config: Config) -> None:
    """Each `[[coins]]` entry valid and listed by its exchange: a definite mistake is a
    ConfigError; an exchange that cannot answer now is a warning (`run` collects the rest)."""
    for index, entry in enumerate(config.coins):
        interval = config.collection.interval if entry.interval is None else entry.interval
        depth = config.collection.depth if entry.depth is None else entry.depth
        try:
            await vet_coin(exchanges, entry.exchange, entry.symbol, interval, depth)
        except (BadRequest, NotFound, Conflict) as exc:
            raise ConfigError(f"coins[{index}]: {exc}") from None
        except ObdError as exc:
            log.warning("config_coin_failed", index=index, error=str(exc))


async def add_config_coins(service: Service, config: Config) -> None:
    """`[[coins]]` are added at start; a definite mistake in one is a config error."""
    for index, entry in enumerate(config.coins):
        try:
            await service.add_coin(entry.exchange, entry.symbol, entry.interval, entry.depth)
        except (BadRequest, NotFound, Conflict) as exc:
            raise ConfigError(f"coins[{index}]: {exc}") from None
        except ObdError as exc:  # e.g. the exchange is unreachable: collect the rest
            log.warning("config_coin_failed", index=index, error=str(exc))


def check_bind_allowed(config: Config) -> None:
    """Auth off is allowed only on loopback: anyone who can reach the port could
    otherwise read and change everything."""
    if not config.auth.enabled and not _is_loopback(config.server.host):
        raise ConfigError(
            f"server.host: {config.server.host} is not a loopback address; "
            "serving beyond this machine needs [auth] enabled = true"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_database_file(path: Path) -> None:
    """An existing file must be one this obd can open and read (StoreError); a missing
    one is created on first run."""
    if not path.is_file():
        return
    conn = open_reader(path)
    try:
        schema.known_version(conn)
    except apsw.Error as exc:  # e.g. "file is not a database"
        raise StoreError(f"database {path}: {exc}") from None
    finally:
        conn.close()


def database_problems(path: Path) -> list[str]:
    """What `obd check` adds to `run`'s checks: the file's integrity (`PRAGMA
    quick_check` reads every page, too slow for every start)."""
    if not path.is_file():
        return []
    try:
        conn = open_reader(path)
        try:
            verdict = str(conn.execute("PRAGMA quick_check").fetchall()[0][0])
        finally:
            conn.close()
    except (StoreError, apsw.Error) as exc:
        return [f"database {path}: {exc}"]
    return [] if verdict == "ok" else [f"database {path}: {verdict}"]
