"""The MCP server over a tool set: the tools with obd's error messages, and the coins as
resources. `obd.mcp.stdio` serves it to a local agent (`obd mcp`), `obd.mcp.http` as
the streamable-HTTP app the daemon mounts at /mcp.

Imported only where MCP is served: the SDK costs ~1.2 s to import.
"""

import asyncio
import functools
import inspect
import logging
import math
import os
import typing
from typing import Any, cast

import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
    UnexpectedToolError,
)
from mcp.server.mcpserver.tools import Tool
from mcp.server.stdio import stdio_server
from mcp.shared.uri_template import UriTemplate
from mcp.types import CallToolResult, InputRequiredResult, Resource, TextContent
from pydantic import ValidationError

from obd import __version__
from obd.errors import NotFound, ObdError
from obd.mcp.schemas import portable
from obd.mcp.shapes import MAX_COINS, MAX_LATEST_LEVELS
from obd.mcp.tools import ANNOTATIONS, NAMES, TITLES, Tools, explain

__all__ = ["build"]

INSTRUCTIONS = """\
obd collects L2 order-book snapshots of crypto coins on a clock-aligned cadence and
keeps them losslessly. Start with list_coins (what is collected, and the stored range
of each). Times are integer ms since the Unix epoch (UTC), ISO 8601, or relative to
now ('now', '-6h', '-1d'); ranges are start <= ts < end. get_history gives compact rows
for reading; download_history gives complete books for analysis; coverage says which
slots are missing and why. To collect a new coin: list_exchanges, list_markets (never
guess a symbol), then add_coin."""

LATEST_URI = "obd://latest{?exchange,symbol}"
_json = msgspec.json.Encoder()


class _Server(MCPServer[Any]):
    """MCPServer with obd's error messages, and one resource per collected coin."""

    def __init__(self, tools: Tools) -> None:
        built = [_tool(tools, name) for name in NAMES]
        super().__init__("obd", version=__version__, instructions=INSTRUCTIONS, tools=built)
        self.obd_tools = tools
        self._properties = {tool.name: tool.parameters.get("properties", {}) for tool in built}

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> CallToolResult | InputRequiredResult:
        known = self._properties.get(name)
        if known is not None and (unknown := sorted(set(arguments) - set(known))):
            takes = ", ".join(known) or "no arguments"
            return _error(f"{unknown[0]}: unknown argument; {name} takes {takes}")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            # Arguments the schema refused: say which, in obd's words, without the
            # pydantic boilerplate (and never a traceback).
            if isinstance(exc, UnexpectedToolError) or not isinstance(
                exc.__cause__, ValidationError
            ):
                raise
            return _error(_invalid(exc.__cause__, self._properties.get(name, {})))

    async def run_stdio_async(self) -> None:
        """As MCPServer's, but cancellable: the SDK reads stdin on a worker thread that only
        a line or EOF wakes, so a SIGTERM'd `obd mcp` would wait for its client to close
        the pipe. Reading on the event loop instead, cancelling returns at once."""
        lines = await _stdin_lines()
        if lines is None:  # stdin is a regular file: the SDK's reader copes
            await super().run_stdio_async()
            return
        async with stdio_server(stdin=cast(Any, lines)) as (read, write):
            # A subclass reaching its base's server: MCPServer has no public way to run
            # it over other streams (the SDK's in-process client does the same).
            lowlevel = self._lowlevel_server
            await lowlevel.run(read, write, lowlevel.create_initialization_options())

    async def list_resources(self) -> list[Resource]:
        listed = await super().list_resources()
        coins = (await self.obd_tools.service.list_coins())[:MAX_COINS]
        template = UriTemplate.parse(LATEST_URI)
        return listed + [
            Resource(
                uri=template.expand({"exchange": coin.exchange, "symbol": coin.symbol}),
                name=f"latest {coin.exchange} {coin.symbol}",
                description=f"The latest snapshot of {coin.symbol} on {coin.exchange}",
                mime_type="application/json",
            )
            for coin in coins
        ]


def build(tools: Tools) -> MCPServer[Any]:
    """The MCP server for a tool set: the tools, plus the coins as resources."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # The SDK logs every session and every refused argument at INFO.
        logging.getLogger("mcp").setLevel(logging.WARNING)
    server = _Server(tools)
    _add_resources(server, tools)
    return server


def _tool(tools: Tools, name: str) -> Tool:
    """A method of `tools` as an MCP tool: its docstring the description, its Struct
    result both JSON text and structured content, obd's errors tool errors."""
    method = getattr(tools, name)

    @functools.wraps(method)
    async def call(**arguments: Any) -> CallToolResult:
        try:
            value = await method(**arguments)
        except ObdError as exc:
            return _error(explain(name, exc), exc.retry_after_s)
        return CallToolResult(
            content=[TextContent(type="text", text=_json.encode(value).decode())],
            structured_content=msgspec.to_builtins(value),
        )

    tool = Tool.from_function(
        call,
        name=name,
        title=TITLES[name],
        description=inspect.getdoc(method),
        annotations=ANNOTATIONS[name],
        structured_output=False,  # the schema comes from the msgspec Struct instead
    )
    # Advertised only: arguments are still checked by the pydantic model behind them.
    tool.parameters = portable(tool.parameters, arguments=True)
    output = _object_schema(typing.get_type_hints(method)["return"])
    tool.fn_metadata.output_schema = portable(output)
    return tool


def _object_schema(kind: Any) -> dict[str, Any]:
    """msgspec's JSON schema for a Struct with the root inlined: MCP wants an object there."""
    (root,), definitions = msgspec.json.schema_components([kind], ref_template="#/$defs/{name}")
    name = root["$ref"].rsplit("/", 1)[-1]
    nested = {key: value for key, value in definitions.items() if key != name}
    return {**definitions[name], **({"$defs": nested} if nested else {})}


def _error(message: str, retry_after_s: float | None = None) -> CallToolResult:
    """A tool error; one a wait may cure (a meter) says when to ask again, in its text and,
    for programs, as `_meta.retry_after_s` (whole seconds, as the WebSocket's error)."""
    if retry_after_s is None:
        return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
    retry = max(1, math.ceil(retry_after_s))
    text = f"{message} (retry_after_s: {retry})"
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        is_error=True,
        _meta={"retry_after_s": retry},
    )


def _invalid(error: ValidationError, properties: dict[str, Any]) -> str:
    """`limit: input should be less than or equal to 200, got 100000`, one part per argument."""
    by_name: dict[str, list[Any]] = {}
    for item in error.errors(include_url=False):
        by_name.setdefault(str(item["loc"][0]) if item["loc"] else "arguments", []).append(item)
    parts = []
    for name, items in by_name.items():
        described = str(properties.get(name, {}).get("description", "")).rstrip(".")
        expected = described[:1].lower() + described[1:]
        first = items[0]
        if first["type"] == "missing":
            parts.append(f"{name}: required ({expected})" if expected else f"{name}: required")
        elif first["type"] == "value_error":  # our own validator's words
            parts.append(f"{name}: {str(first['msg']).removeprefix('Value error, ')}")
        elif len(items) > 1:  # one error per member of a union: say what is accepted
            parts.append(f"{name}: got {first['input']!r:.60}; expected {expected}")
        else:
            message = str(first["msg"])
            got = "" if "got" in message else f", got {first['input']!r:.60}"
            parts.append(f"{name}: {message[:1].lower()}{message[1:]}{got}")
    return "; ".join(parts)


def _add_resources(server: MCPServer[Any], tools: Tools) -> None:
    @server.resource(
        "obd://coins",
        name="coins",
        description="The coins obd collects, as list_coins returns them",
        mime_type="application/json",
    )
    async def coins() -> str:
        return _json.encode(await tools.list_coins()).decode()

    @server.resource(
        LATEST_URI,
        name="latest",
        description=f"A coin's latest snapshot, {MAX_LATEST_LEVELS} levels a side at most",
        mime_type="application/json",
    )
    async def latest(exchange: str = "", symbol: str = "") -> str:
        try:
            snapshot = await tools.get_latest(exchange, symbol, MAX_LATEST_LEVELS)
        except NotFound as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except ObdError as exc:
            raise ResourceError(str(exc)) from None
        return _json.encode(snapshot).decode()


# -- stdin, read on the loop --

MAX_LINE_BYTES = 16 * 1024 * 1024  # one JSON-RPC message from the client; requests are small


class _Lines:
    """stdin lines as the SDK's stdio transport iterates them."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._stream = reader

    def __aiter__(self) -> "_Lines":
        return self

    async def __anext__(self) -> str:
        line = await self._stream.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", "replace")


async def _stdin_lines() -> _Lines | None:
    """stdin read by the event loop, or None where it cannot be (a regular file)."""
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    pipe = os.fdopen(os.dup(0), "rb", buffering=0)
    try:
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
    except ValueError:
        pipe.close()
        return None
    return _Lines(reader)
