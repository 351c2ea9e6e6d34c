"""The OpenAPI document: valid 3.1, every /v1 route with its query parameters, the
error body and the bearer scheme; Swagger UI at /schema (issue 12, item 4)."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from obd.auth import OpenAccess
from obd.config import load
from obd.context import open_service
from obd.http.app import create_app
from tests.conftest import write_config

_STUB: Any = object()  # the token endpoint: adds the /v1/clients routes


def _fetch(
    tmp_path: Path, authenticator: Any = None
) -> tuple[dict[str, Any], httpx.Response, dict[tuple[str, str], Any]]:
    async def go() -> tuple[dict[str, Any], httpx.Response, dict[tuple[str, str], Any]]:
        async with open_service(load(write_config(tmp_path))) as service:
            # The token endpoint adds its routes; an authenticator that is not OpenAccess
            # is auth on (the schema route asks it nothing).
            app = create_app(service, authenticator or OpenAccess(), oauth=_STUB)
            routes = {
                (route.path, method.lower()): handler.opt
                for route in app.routes
                if isinstance(route, HTTPRoute) and route.path.startswith("/v1")
                for handler in route.route_handlers
                for method in handler.http_methods
                if method != "OPTIONS"
            }
            async with AsyncTestClient(app) as client:
                document = (await client.get("/schema/openapi.json")).json()
                page = await client.get("/schema")
        return document, page, routes

    return asyncio.run(go())


def test_schema_is_openapi_3_1_and_lists_every_v1_route(tmp_path: Path) -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    document, page, routes = _fetch(tmp_path)
    validate(document, cls=OpenAPIV31SpecValidator)
    assert document["openapi"].startswith("3.1")
    assert page.status_code == 200
    assert "swagger" in page.text.lower()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearer"]["description"],
    }
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]
    assert len(routes) >= 10  # coins (3), availability, books, latest, coverage, clients (3)
    for (path, method), opt in routes.items():
        operation = document["paths"][path][method]
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
        assert names == list(opt["query"]), (path, method)  # what the guard enforces
        # Auth off (OpenAccess): a token is optional, `{}` says so.
        assert operation["security"] == [{"bearer": [opt["scope"]]}, {}]
        for status in ("400", "401", "403", "404"):
            error = operation["responses"][status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}


def test_every_answer_and_body_has_its_schema_and_auth_on_needs_a_token(tmp_path: Path) -> None:
    """What the handlers encode and decode themselves is in the document (schemathesis
    holds the server to it: tests/test_fuzz.py), and with auth on no route is open."""
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    document, _, routes = _fetch(tmp_path, authenticator=_STUB)
    validate(document, cls=OpenAPIV31SpecValidator)
    schemas = document["components"]["schemas"]
    for path, method in [*routes, ("/healthz", "get"), ("/readyz", "get")]:
        operation = document["paths"][path][method]
        if (path, method) in routes:
            assert operation["security"] == [{"bearer": [routes[path, method]["scope"]]}]
        answers = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
        assert answers, (path, method)
        for answer in answers.values():
            reference = answer["content"]["application/json"]["schema"]["$ref"]
            assert reference.rsplit("/", 1)[1] in schemas, (path, method)
    coin = schemas["AddCoinBody"]["properties"]
    body = document["paths"]["/v1/coins"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/AddCoinBody")
    assert coin["exchange"]["pattern"].startswith("^[a-z0-9]")
    assert schemas["Snapshot"]["properties"]["bids"]["items"]["maxItems"] == 2
    assert document["paths"]["/metrics"]["get"]["responses"]["200"]["content"].keys() == {
        "text/plain"
    }


def test_options_lists_every_method_of_the_path(tmp_path: Path) -> None:
    """Litestar's own OPTIONS answer listed only the first handler's methods."""

    async def go() -> httpx.Response:
        async with open_service(load(write_config(tmp_path))) as service:
            app = create_app(service, OpenAccess())
            async with AsyncTestClient(app, base_url="http://127.0.0.1") as client:
                return await client.options("/v1/coins")

    answer = asyncio.run(go())
    assert answer.status_code == 204
    assert answer.headers["allow"] == "DELETE, GET, OPTIONS, POST"
