"""`obd mcp`: the MCP tools over stdio for a local agent, on the configured file.

stdout carries the protocol only; logs go to stderr (obd.log). With `--collect` this
process also collects, as `obd run` would (when no daemon does).
"""

import asyncio
import functools
import signal
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from mcp.server.mcpserver import MCPServer

from obd.collect import lock
from obd.config import Config
from obd.context import add_config_coins, open_runtime
from obd.mcp.server import build
from obd.mcp.tools import Tools
from obd.times import now_ms

__all__ = ["run_stdio"]

Job = Callable[[], Coroutine[Any, Any, None]]


def run_stdio(config: Config, *, collect: bool) -> None:
    """Serve until the client closes stdin, or SIGTERM/SIGINT. stdout carries the
    protocol only; logs go to stderr (obd.log) and stray prints are diverted there."""
    asyncio.run(_stdio(config, collect))


async def _stdio(config: Config, collect: bool) -> None:
    holding: AbstractAsyncContextManager[Any] = (
        lock.CollectorLock(config.database) if collect else nullcontext()
    )
    started = now_ms() if collect else None
    async with holding, open_runtime(config, collector_started_ms=started) as runtime:
        if collect:
            await add_config_coins(runtime.service, config)
        tools = Tools(
            runtime.service,
            download_dir=config.download_dir,
            daemon_running=functools.partial(lock.collecting, config.database),
        )
        await _serve_stdio(build(tools), runtime.background())


async def _serve_stdio(server: MCPServer[Any], background: dict[str, Job]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(server.run_stdio_async(), name="mcp stdio")
        stopping = tasks.create_task(stop.wait(), name="signals")
        jobs = [tasks.create_task(job(), name=name) for name, job in background.items()]
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        for task in (serving, stopping, *jobs):
            task.cancel()
