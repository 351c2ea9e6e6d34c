"""Assembles a process's parts from the config: plugins, store, service."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

from obd.collect import Collector
from obd.config import Config
from obd.exchanges import Exchanges
from obd.exchanges.discovery import Plugins, discover
from obd.service import Service
from obd.storage.reader import Reader
from obd.storage.writer import Writer

log = structlog.get_logger("obd")


def load_plugins(config: Config) -> Plugins:
    registry = discover(config.plugin_dirs, use_entry_points=config.plugins.entry_points)
    for found in registry.found:
        if found.error:
            log.warning("plugin_failed", plugin=found.name, origin=found.origin, error=found.error)
    return registry


@asynccontextmanager
async def open_service(
    config: Config, *, collector_started_ms: int | None = None
) -> AsyncIterator[Service]:
    """The service over the configured file, with its writer running. With
    `collector_started_ms` a collector is built too (the daemon); the caller runs it."""
    exchanges = Exchanges(load_plugins(config), config.exchanges)
    exchanges.check_options()
    writer = Writer(config.database)
    await writer.open()
    read = Reader(config.database)
    collector = (
        None if collector_started_ms is None else Collector(exchanges, writer, collector_started_ms)
    )
    service = Service(
        exchanges,
        read,
        writer,
        collector,
        default_interval=config.collection.interval,
        default_depth=config.collection.depth,
    )
    writing = asyncio.create_task(writer.run(), name="writer")
    try:
        yield service
    finally:
        await writer.stop()
        await writing
        await writer.close()
        read.close()
        await exchanges.close()
