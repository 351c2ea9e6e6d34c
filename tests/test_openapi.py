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


def _fetch(tmp_path: Path) -> tuple[dict[str, Any], httpx.Response, dict[tuple[str, str], Any]]:
    async def go() -> tuple[dict[str, Any], httpx.Response, dict[tuple[str, str], Any]]:
        async with open_service(load(write_config(tmp_path))) as service:
            app = create_app(service, OpenAccess(), oauth=_STUB)  # only its routes are built
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
        assert operation["security"] == [{"bearer": [opt["scope"]]}]
        for status in ("400", "401", "403", "404"):
            error = operation["responses"][status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}
