"""`/v1/clients` (scope `admin`): OAuth clients over HTTP, as `obd client` on the host.
Mounted with the token endpoint, only with `[auth] enabled`."""

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post

from obd.auth import parse_scopes
from obd.auth.clients import Client
from obd.errors import BadRequest
from obd.http.oauth import TokenEndpoint
from obd.service import Service

MAX_BODY_BYTES = 4 * 1024  # `{"name", "scopes"}` is ~60 bytes
AnyRequest = Request[Any, Any, Any]
_json = msgspec.json.Encoder()


class NewClient(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    scopes: list[str] | str = "read"


class ClientView(msgspec.Struct, frozen=True):
    client_id: str
    name: str
    scopes: list[str]
    created_ts: int


_new_client = msgspec.json.Decoder(NewClient)


def _view(client: Client) -> ClientView:
    return ClientView(client.client_id, client.name, sorted(client.scopes), client.created_ts)


def _service(request: AnyRequest) -> Service:
    service: Service = request.app.state.service
    return service


def _respond(payload: Any, status: int = 200) -> Response[bytes]:
    return Response(_json.encode(payload), status_code=status, media_type="application/json")


@get("/v1/clients", opt={"scope": "admin", "query": ()})
async def list_clients(request: AnyRequest) -> Response[bytes]:
    found = await _service(request).clients.listing()
    return _respond({"items": [_view(client) for client in found]})


@post("/v1/clients", opt={"scope": "admin", "query": ()}, request_max_body_size=MAX_BODY_BYTES)
async def add_client(request: AnyRequest) -> Response[bytes]:
    """201 `{"client_id", "client_secret", "scopes"}`: the only time the secret is shown."""
    try:
        body = _new_client.decode(await request.body())
    except msgspec.DecodeError:
        raise BadRequest('body: expected {"name": "...", "scopes": ["read"]}') from None
    raw = body.scopes if isinstance(body.scopes, str) else " ".join(body.scopes)
    scopes = parse_scopes(raw)
    client, secret = await _service(request).clients.add(body.name, scopes)
    shown = {"client_id": client.client_id, "client_secret": secret, "scopes": sorted(scopes)}
    return Response(
        _json.encode(shown),
        status_code=201,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@delete("/v1/clients", opt={"scope": "admin", "query": ("name",)}, status_code=200)
async def remove_client(request: AnyRequest) -> Response[bytes]:
    name = request.query_params.get("name")
    if not name:
        raise BadRequest("name: required")
    client = await _service(request).clients.remove(str(name))
    endpoint: TokenEndpoint = request.app.state.oauth
    endpoint.forget(client.client_id)  # its tokens fail from the next request on
    return _respond(_view(client))


HANDLERS = [list_clients, add_client, remove_client]
