"""What the app mounts at /mcp: the MCP app, or one that builds it on the first request.

The MCP SDK (pydantic and its schemas) is a third of a daemon's memory and a second of
its start-up; a daemon nobody asks over MCP never needs it. `LazyMcp` imports and
builds it on the first /mcp request (the import on a worker thread, so the loop keeps
turning meanwhile) and runs its session manager from then until the app shuts down.
"""

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from obd.mcp.http import McpHttp

__all__ = ["LazyMcp", "McpApp"]


class McpApp(Protocol):
    """An ASGI app with a lifespan: `obd.mcp.http.McpHttp`, or `LazyMcp`."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    def lifespan(self, app: object) -> AbstractAsyncContextManager[None]: ...


class LazyMcp:
    """`McpHttp` from `build()` on the first request; `build` runs on the loop after
    `obd.mcp.http` has been imported on a worker thread."""

    def __init__(self, build: "Callable[[], McpHttp]") -> None:
        self._build = build
        self._app: McpHttp | None = None
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._sessions: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        app = self._app or await self._start()
        await app(scope, receive, send)

    async def _start(self) -> "McpHttp":
        async with self._lock:
            if self._app is None:
                await asyncio.to_thread(importlib.import_module, "obd.mcp.http")
                app = self._build()
                ready = asyncio.Event()
                # The session manager is entered and left in one task (anyio's cancel
                # scopes require it), which lives until the app's lifespan ends.
                sessions = asyncio.create_task(self._run(app, ready), name="mcp sessions")
                self._sessions = sessions
                waiting = asyncio.ensure_future(ready.wait())
                await asyncio.wait({waiting, sessions}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                if not ready.is_set():
                    sessions.result()  # raises why it could not start
                    raise RuntimeError("the MCP session manager stopped at start")
                self._app = app
            return self._app

    async def _run(self, app: "McpHttp", ready: asyncio.Event) -> None:
        async with app.lifespan(None):
            ready.set()
            await self._stop.wait()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self._stop.set()
            if self._sessions is not None:
                with contextlib.suppress(Exception):
                    await self._sessions
