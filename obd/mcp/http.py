"""The MCP tools as a streamable-HTTP ASGI app, for the daemon to mount at /mcp."""

from contextlib import AbstractAsyncContextManager
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings

from obd.auth import Authenticator
from obd.mcp.server import build
from obd.mcp.tools import Tools
from obd.service import Service

__all__ = ["McpHttp"]


class McpHttp:
    """The tools as a streamable-HTTP ASGI app, for the daemon to mount at /mcp. Its
    session manager runs in the app's lifespan (`lifespan`), once per instance."""

    def __init__(self, service: Service, authenticator: Authenticator, host: str) -> None:
        self._server = build(Tools(service, authenticator=authenticator))
        self._app = self._server.streamable_http_app(
            streamable_http_path="/", transport_security=_transport_security(host)
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    def lifespan(self, _app: object) -> AbstractAsyncContextManager[None]:
        return self._server.session_manager.run()


def _transport_security(host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection: the Host (and any Origin) must name this machine or the
    configured host. Any port: a rebinding attack changes the name, not the port."""
    names = {"127.0.0.1", "localhost", "[::1]", f"[{host}]" if ":" in host else host}
    hosts = sorted(names | {f"{name}:*" for name in names})
    origins = sorted(f"{scheme}://{name}" for scheme in ("http", "https") for name in hosts)
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)
