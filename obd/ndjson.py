"""NDJSON, one JSON value a line: the one encoder behind `GET /v1/books?format=ndjson`,
NDJSON downloads (MCP) and NDJSON exports, so the three stay the same bytes."""

from collections.abc import Iterable
from typing import Any

import msgspec

__all__ = ["lines"]

_json = msgspec.json.Encoder()


def lines(items: Iterable[Any]) -> bytes:
    """Each item as JSON, each followed by a newline."""
    buffer = bytearray()
    for item in items:
        _json.encode_into(item, buffer, len(buffer))
        buffer.extend(b"\n")
    return bytes(buffer)
