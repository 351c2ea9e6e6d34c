"""`obd run`: collectors, writer and the HTTP app as named tasks on one uvloop loop.

obd owns SIGTERM/SIGINT: samplers stop, the HTTP server closes, the writer drains,
the WAL is checkpointed, and the process exits 0.
"""

import asyncio
import contextlib
import functools
import gc
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
import uvicorn

from obd import __version__
from obd.auth import Authenticator, OpenAccess
from obd.collect.lock import CollectorLock
from obd.config import Config
from obd.context import (
    add_config_coins,
    load_plugins,
    open_runtime,
    start_checks,
    vet_config_coins,
)
from obd.errors import ConfigError, ObdError
from obd.http.app import create_app
from obd.http.mcp_mount import LazyMcp
from obd.http.ws import route as ws
from obd.http.ws.hub import Hub
from obd.http.ws.protocol import Protocol as WebSocketProtocol
from obd.notify import (
    STATUS_INTERVAL_S,
    keep_status_current,
    keep_watchdog_fed,
    notify,
    under_systemd,
    watchdog_interval_s,
)
from obd.service import Service
from obd.times import now_ms

if TYPE_CHECKING:
    from obd.http.oauth import TokenEndpoint
    from obd.mcp.http import McpHttp

log = structlog.get_logger("obd")

# The WebSocket protocol uvicorn runs (a name uvicorn knows, or a class); a module
# global so benchmarks/bench_ws.py can measure uvicorn's own against it.
WS_PROTOCOL: "type[asyncio.Protocol] | str" = WebSocketProtocol


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (it would re-raise SIGTERM after its own
    shutdown and kill the writer mid-flush), and without its 0.1 s tick."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if not hasattr(self, "_exit"):
            self._exit = asyncio.Event()
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    async def main_loop(self) -> None:
        """uvicorn's loop wakes every 0.1 s to look at `should_exit`, ten wake-ups a second
        (~0.2 ms of CPU each on a small VM, caches cold) for a flag only obd sets: here
        setting it wakes the loop, and the tick (the `Date` header, refreshed when
        `on_tick`'s counter is a multiple of 10) comes once a second."""
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864_000
            # On the wall clock's whole second, where slots and feed updates wake the
            # loop anyway: the tick shares their wake-up instead of adding one.
            left_s = 1.0 - time.time() % 1.0
            left_s += 1.0 if left_s < 0.1 else 0.0  # this tick came a hair early
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left_s):
                    await self._exit.wait()


async def run(config: Config) -> None:
    log.info("starting", version=__version__, pid=os.getpid(), database=str(config.database))
    plugins = load_plugins(config)
    for check in start_checks(config, plugins):  # `obd check` runs the same list
        check()
    sock = bind(config.server.host, config.server.port)
    started = now_ms()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lock = CollectorLock(config.database)  # one collector per file; `obd mcp` looks for it
    opened = open_runtime(config, collector_started_ms=started, plugins=plugins)
    async with lock, opened as runtime:
        service = runtime.service
        await vet_config_coins(runtime.exchanges, config)
        await add_config_coins(service, config)
        authenticator, oauth = _auth(config, service)
        mcp = _mcp(config, service, authenticator)
        hub = Hub()
        runtime.on_commit(hub.publish)  # the live feed: only what is committed
        server = _Server(
            uvicorn.Config(
                create_app(
                    service,
                    authenticator,
                    mcp=mcp,
                    hub=hub,
                    metrics=runtime.metrics,
                    oauth=oauth,
                    host=config.server.host,
                    allowed_hosts=config.server.allowed_hosts,
                    public_url=config.server.public_url,
                ),
                log_config=None,
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=5,
                # WebSocket: uvicorn's sans-I/O protocol, plus the direct writer the hub
                # fans frames out with; frames are encoded once for all subscribers, so
                # no per-client compression; larger frames are refused with 1009; dead
                # peers time out.
                ws=WS_PROTOCOL,
                ws_per_message_deflate=False,
                ws_max_size=ws.MAX_FRAME_BYTES,
                ws_ping_interval=ws.PING_INTERVAL_S,
                ws_ping_timeout=ws.PING_TIMEOUT_S,
            )
        )
        async with asyncio.TaskGroup() as tasks:
            jobs = [
                tasks.create_task(job(), name=name) for name, job in runtime.background().items()
            ]
            serving = tasks.create_task(server.serve(sockets=[sock]), name="http")
            await _until_started(server, serving)
            host, port = sock.getsockname()[:2]
            log.info(
                "serving",
                url=f"http://{_url_host(host)}:{port}",
                port=port,
                database=str(config.database),
            )
            # What start-up made lives as long as the process: the collector never needs
            # to scan it again (fewer, shorter pauses of the loop the feeds run on).
            gc.collect()
            gc.freeze()
            notify("READY=1")
            if interval_s := watchdog_interval_s():
                jobs.append(tasks.create_task(keep_watchdog_fed(interval_s), name="watchdog"))
            if under_systemd():
                status = functools.partial(_status_line, service)
                report = keep_status_current(status, STATUS_INTERVAL_S)
                jobs.append(tasks.create_task(report, name="status"))
            await stop.wait()
            notify("STOPPING=1")
            log.info("stopping")
            for job in jobs:
                job.cancel()
            server.should_exit = True
            await serving
    log.info("stopped")


async def _status_line(service: Service) -> str:
    """One line for `systemctl status`: coins live (fresh) of those collected, backlog."""
    health = await service.health()
    live = sum(1 for coin in health.coins if coin["fresh"])
    line = f"{live}/{len(health.coins)} coins live, writer backlog {health.writer_backlog}"
    return line + (f", writer failing: {health.writer_error}" if health.writer_error else "")


async def _until_started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    """READY means serving: wait for uvicorn's start-up (the app's lifespan included)."""
    while not server.started:
        if serving.done():
            raise ObdError("the HTTP server did not start; the log above says why")
        await asyncio.sleep(0.01)


def _mcp(config: Config, service: Service, authenticator: Authenticator) -> LazyMcp:
    """/mcp, built on its first request: the MCP SDK costs ~1.2 s and ~35 MiB, which a
    daemon nobody asks over MCP never pays."""

    def build() -> "McpHttp":
        from obd.mcp.http import McpHttp

        host, allowed = config.server.host, config.server.allowed_hosts
        return McpHttp(service, authenticator, host, allowed)

    return LazyMcp(build)


def _auth(config: Config, service: Service) -> "tuple[Authenticator, TokenEndpoint | None]":
    """OpenAccess on loopback with auth off; else bearer JWTs and the token endpoint
    (the signing key is made on first start, beside the database)."""
    if not config.auth.enabled:
        return OpenAccess(), None
    from obd.auth import bearer as token_auth
    from obd.auth import tokens
    from obd.auth.ratelimit import FailureLimit
    from obd.http.oauth import TokenEndpoint

    key = tokens.signing_key(config)
    authenticator = token_auth.build(config, key, service.clients.get)
    limit = FailureLimit(config.auth.max_failures, config.auth.failure_window_s)
    issuer, jwks = tokens.Issuer(key, config), tokens.public_jwks(key)
    endpoint = TokenEndpoint(
        service.clients.verify, issuer, limit, jwks, forget=authenticator.forget
    )
    return authenticator, endpoint


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so a taken port is obd's error to report, not uvicorn's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"server: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock
