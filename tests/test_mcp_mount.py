"""`LazyMcp`: the MCP app is built on the first /mcp request, once, and its session
manager runs from then until the app's lifespan ends."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from obd.http.mcp_mount import LazyMcp


class _App:
    """Stands in for McpHttp: counts calls and records its lifespan."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        self.events.append("sessions started")
        try:
            yield
        finally:
            self.events.append("sessions stopped")


def test_built_once_on_first_use_and_stopped_with_the_app() -> None:
    events: list[str] = []
    built: list[_App] = []

    def build() -> Any:
        built.append(_App(events))
        return built[-1]

    async def scenario() -> None:
        lazy = LazyMcp(build)
        async with lazy.lifespan(None):
            assert built == []  # nothing until a request comes
            await asyncio.gather(*(lazy({}, None, None) for _ in range(5)))
            assert len(built) == 1
            assert built[0].calls == 5
            assert events == ["sessions started"]
        assert events == ["sessions started", "sessions stopped"]

    asyncio.run(scenario())


def test_an_unused_mount_shuts_down_without_building() -> None:
    async def scenario() -> None:
        lazy = LazyMcp(lambda: (_ for _ in ()).throw(AssertionError("built")))
        async with lazy.lifespan(None):
            pass

    asyncio.run(scenario())
