"""The status page at `/`: static files shipped in the package (`obd/http/static/`),
plain HTML, CSS and JavaScript with no build step and nothing loaded from elsewhere, so
it works on an offline host. The page reads the `/v1` routes like any client (docs/PAGE.md)."""

from functools import cache
from importlib import resources

from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

__all__ = ["HANDLERS"]

_TYPES = {  # Litestar adds `; charset=utf-8` to text types itself
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}
# Only the page's own scripts, styles and calls to this daemon (its WebSocket included).
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return resources.files("obd.http").joinpath("static", name).read_bytes()


def _file(name: str) -> Response[bytes]:
    if name not in _TYPES:
        raise NotFoundException(f"no such file: {name[:60]!r}")
    return Response(_read(name), media_type=_TYPES[name], headers=_HEADERS)


@get("/", include_in_schema=False)
async def index() -> Response[bytes]:
    return _file("index.html")


@get("/ui/{name:str}", include_in_schema=False)
async def static(name: FromPath[str]) -> Response[bytes]:
    return _file(name)


HANDLERS = [index, static]
