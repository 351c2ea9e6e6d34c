"""The MCP tools as a streamable-HTTP ASGI app, for the daemon to mount at /mcp."""

from collections.abc import Sequence
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

    def __init__(
        self,
        service: Service,
        authenticator: Authenticator,
        host: str,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self._server = build(Tools(service, authenticator=authenticator))
        security = _transport_security(host, allowed_hosts)
        self._app = self._server.streamable_http_app(
            streamable_http_path="/", transport_security=security
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    def lifespan(self, _app: object) -> AbstractAsyncContextManager[None]:
        return self._server.session_manager.run()


def _transport_security(host: str, allowed: Sequence[str]) -> TransportSecuritySettings:
    """DNS-rebinding protection: the Host (and any Origin) must name this machine, the
    configured host or one of `[server] allowed_hosts`. Any port: a rebinding attack
    changes the name, not the port."""
    given = (host, *(name.strip("[]") for name in allowed))
    names = {"127.0.0.1", "localhost", "[::1]", *(f"[{n}]" if ":" in n else n for n in given)}
    hosts = sorted(names | {f"{name}:*" for name in names})
    origins = sorted(f"{scheme}://{name}" for scheme in ("http", "https") for name in hosts)
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)
