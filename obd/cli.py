"""The `obd` command line. Library code raises; this maps errors to one-line
messages and exit codes (0 ok, 1 internal error, 2 user error)."""

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from obd import __version__, log
from obd.config import Config, load, locate
from obd.context import (
    database_problems,
    load_plugins,
    open_service,
    start_checks,
    vet_config_coins,
)
from obd.errors import BadRequest, ObdError
from obd.exchanges import Exchanges
from obd.exchanges.discovery import Plugins
from obd.service import Service

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"obd: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="obd", description="the order-book daemon")
    parser.add_argument("--version", action="version", version=f"obd {__version__}")
    config_help = "config file (default: $OBD_CONFIG, then ./config.toml)"
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", help=config_help)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("run", parents=[common], help="run the daemon")
    commands.add_parser("check", parents=[common], help="validate config, database and plugins")
    commands.add_parser("plugins", parents=[common], help="list exchange plugins and load errors")
    mcp = commands.add_parser("mcp", parents=[common], help="serve MCP tools over stdio")
    mcp.add_argument(
        "--collect", action="store_true", help="also collect, when no daemon runs on the database"
    )
    coins = commands.add_parser("coins", help="manage the collected coins").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    listing = coins.add_parser("list", parents=[common], help="coins in the database")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument(
        "--removed", action="store_true", help="every series, removed ones too (with STATUS)"
    )
    add = coins.add_parser("add", parents=[common], help="collect a coin (checks it is listed)")
    add.add_argument("exchange")
    add.add_argument("symbol")
    add.add_argument("--interval", help="cadence, e.g. 30s, 5m (default from config)")
    add.add_argument("--depth", type=int, help="levels a side to keep (default from config)")
    remove = coins.add_parser("remove", parents=[common], help="stop collecting (data kept)")
    remove.add_argument("exchange")
    remove.add_argument("symbol")
    status = commands.add_parser(
        "status", parents=[common], help="coins and 24 h coverage, asked of the running daemon"
    )
    status.add_argument("--url", help="the daemon (default: http://[server] host:port)")
    status.add_argument("--token", help="bearer token with `read` (default: $OBD_TOKEN)")
    _client_parsers(commands, common)
    copy = commands.add_parser(
        "backup", parents=[common], help="consistent copy of the database (safe while running)"
    )
    copy.add_argument("out", metavar="OUT.sqlite", help="the new file (never overwritten)")
    _export_parser(commands, common)
    _backfill_parser(commands, common)
    return parser


def _backfill_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    fill = commands.add_parser(
        "backfill",
        parents=[common],
        help="fill a range from history providers (archive, peer; docs/HISTORY.md)",
    )
    fill.add_argument("exchange")
    fill.add_argument("symbol")
    fill.add_argument("--start", required=True, help="ms, ISO 8601 or relative ('-1d')")
    fill.add_argument("--end", required=True, help="ms, ISO 8601 or 'now', exclusive")
    fill.add_argument("--provider", help="only this provider (default: [history] providers)")
    fill.add_argument("--interval", help="a new series' cadence (default from config)")
    fill.add_argument("--depth", type=int, help="a new series' depth (default from config)")
    fill.add_argument("--json", action="store_true", help="the report as one JSON object")


def _export_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    export = commands.add_parser(
        "export", parents=[common], help="a range as Parquet/CSV/NDJSON files (docs/RESEARCH.md)"
    )
    export.add_argument("--exchange", help="only this exchange (default: all)")
    export.add_argument("--symbol", help="only this symbol (default: all)")
    export.add_argument(
        "--start", help="ms, ISO 8601 or relative ('-1d'), inclusive (default: the first)"
    )
    export.add_argument("--end", help="ms, ISO 8601 or 'now', exclusive (default: past the last)")
    export.add_argument(
        "--database",
        metavar="FILE",
        help="read this database file (a copy, say) instead of the config's; no config needed",
    )
    export.add_argument("--format", required=True, choices=("parquet", "csv", "ndjson"))
    export.add_argument("--out", required=True, metavar="DIR", help="Hive-partitioned tree")


def _client_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    client = commands.add_parser("client", help="OAuth client credentials").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    add = client.add_parser("add", parents=[common], help="create a client; prints its secret")
    add.add_argument("name")
    add.add_argument("--scope", default="read", help="read,write,admin (default: read)")
    client.add_parser("list", parents=[common], help="the clients (never their secrets)")
    remove = client.add_parser("remove", parents=[common], help="revoke a client and its tokens")
    remove.add_argument("name")
    token = commands.add_parser("token", parents=[common], help="print a bearer token")
    token.add_argument("--client", required=True, metavar="NAME")
    token.add_argument("--scope", help="narrow the token to these scopes")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log.configure(os.environ.get("OBD_LOG_LEVEL", "info"))
    try:
        if getattr(args, "database", None) is not None:  # `obd export --database FILE`
            return _export_file(args)
        config = load(locate(args.config))
        handler = _COMMANDS[(args.command, getattr(args, "action", None))]
        return handler(config, args)
    except ObdError as exc:
        print(f"obd: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("OBD_DEBUG"):
            raise
        print(
            f"obd: internal error: {type(exc).__name__}: {exc} (OBD_DEBUG=1 shows more)",
            file=sys.stderr,
        )
        return 1


def _run(config: Config, args: argparse.Namespace) -> int:
    import uvloop

    from obd import daemon

    uvloop.run(daemon.run(config))
    return 0


def _mcp(config: Config, args: argparse.Namespace) -> int:
    from obd.mcp import stdio  # the SDK takes ~1.2 s to import: only this command pays

    stdio.run_stdio(config, collect=args.collect)
    return 0


def _async(config: Config, coro: Callable[[Service], Coroutine[Any, Any, int]]) -> int:
    async def go() -> int:
        async with open_service(config) as service:
            return await coro(service)

    return asyncio.run(go())


def _coins_list(config: Config, args: argparse.Namespace) -> int:
    async def go(service: Service) -> int:
        coins = await service.list_coins(args.removed)
        if args.json:
            for coin in coins:
                print(msgspec.json.encode(coin).decode())
        else:
            _table(coins, args.removed)
        return 0

    return _async(config, go)


def _table(coins: list[Any], status: bool = False) -> None:
    rows: list[tuple[str, ...]] = [
        ("EXCHANGE", "SYMBOL", "INTERVAL", "DEPTH", "COUNT", "LAST_TS", "STATUS")
    ]
    rows += [
        (
            c.exchange,
            c.symbol,
            c.interval,
            str(c.depth),
            str(c.count),
            str(c.last_ts or "-"),
            c.status,
        )
        for c in coins
    ]
    if not status:  # the table as it was: the coins collected
        rows = [row[:-1] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _coins_add(config: Config, args: argparse.Namespace) -> int:
    async def go(service: Service) -> int:
        coin, created = await service.add_coin(
            args.exchange, args.symbol, args.interval, args.depth
        )
        verb = "added" if created else "already collected:"
        print(f"{verb} {coin.symbol} on {coin.exchange} every {coin.interval}, depth {coin.depth}")
        return 0

    return _async(config, go)


def _coins_remove(config: Config, args: argparse.Namespace) -> int:
    async def go(service: Service) -> int:
        coin = await service.remove_coin(args.exchange, args.symbol)
        print(f"removed {coin.symbol} on {coin.exchange} (its data is kept)")
        return 0

    return _async(config, go)


def _backup(config: Config, args: argparse.Namespace) -> int:
    from obd.storage.backup import backup

    size = backup(config.database, Path(args.out))
    print(f"copied {config.database} to {args.out} ({size:,} bytes)")
    return 0


def _export(config: Config, args: argparse.Namespace) -> int:
    return _export_from(config.database, args)


def _export_file(args: argparse.Namespace) -> int:
    """A file named on the command line, read without a config: a copy on a laptop."""
    if args.config is not None:
        raise BadRequest("export: give --database or --config, not both")
    return _export_from(Path(args.database), args)


def _export_from(database: Path, args: argparse.Namespace) -> int:
    from obd.research import export
    from obd.times import parse_time

    start = None if args.start is None else parse_time(args.start, "start")
    end = None if args.end is None else parse_time(args.end, "end")
    done = export.run(
        database,
        Path(args.out),
        args.format,
        exchange=args.exchange,
        symbol=args.symbol,
        start=start,
        end=end,
        progress=sys.stderr,
    )
    print(
        f"exported {done.snapshots:,} snapshots to {args.out}: {done.written} partitions "
        f"written, {done.skipped} complete ones kept"
    )
    return 0


def _status(config: Config, args: argparse.Namespace) -> int:
    from obd import status

    url = args.url or status.daemon_url(config)
    status.show(status.fetcher(url, args.token or os.environ.get("OBD_TOKEN")))
    return 0


def _backfill(config: Config, args: argparse.Namespace) -> int:
    from obd.times import iso

    bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() and not args.json else None

    async def go(service: Service) -> int:
        report = await service.backfill(
            args.exchange,
            args.symbol,
            args.start,
            args.end,
            interval=args.interval,
            depth=args.depth,
            provider=args.provider,
            progress=None if bar is None else bar.update,
        )
        if bar is not None:
            bar.done()
        if args.json:
            print(msgspec.json.encode(report).decode())
            return 0
        rate = report.backfilled / report.seconds if report.seconds else 0.0
        print(
            f"{report.symbol} on {report.exchange} [{iso(report.start)}, {iso(report.end)}): "
            f"{report.slots:,} slots, {report.present:,} already stored, "
            f"{report.backfilled:,} back-filled ({rate:,.0f}/s), "
            f"{report.unfilled_slots:,} not filled"
            + (" (history only)" if report.history_only else "")
        )
        for gap in report.unfilled:
            print(f"  not filled [{iso(gap.start)}, {iso(gap.end)}): {gap.why}")
        return 0

    return _async(config, go)


class _ProgressBar:
    """One line on a terminal (share of the range done, time so far), redrawn at most
    ~10 times a second."""

    def __init__(self, out: Any) -> None:
        import time

        self._out = out
        self._began = time.monotonic()
        self._shown = 0.0

    def update(self, slot: int, lo: int, hi: int) -> None:
        import time

        now = time.monotonic()
        if now - self._shown < 0.1 and slot < hi:
            return
        self._shown = now
        share = 1.0 if hi <= lo else (slot - lo) / (hi - lo)
        filled = int(share * 30)
        elapsed = now - self._began
        self._out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {share:6.1%} {elapsed:5.0f} s")
        self._out.flush()

    def done(self) -> None:
        self._out.write("\n")
        self._out.flush()


def _client_add(config: Config, args: argparse.Namespace) -> int:
    from obd.auth import parse_scopes

    scopes = parse_scopes(args.scope)

    async def go(service: Service) -> int:
        client, secret = await service.clients.add(args.name, scopes)
        shown = {"client_id": client.client_id, "client_secret": secret, "scopes": sorted(scopes)}
        print(msgspec.json.encode(shown).decode())  # the only time the secret is shown
        return 0

    return _async(config, go)


def _client_list(config: Config, args: argparse.Namespace) -> int:
    async def go(service: Service) -> int:
        for client in await service.clients.listing():
            print(f"{client.name}\t{client.client_id}\t{','.join(sorted(client.scopes))}")
        return 0

    return _async(config, go)


def _client_remove(config: Config, args: argparse.Namespace) -> int:
    async def go(service: Service) -> int:
        client = await service.clients.remove(args.name)
        print(f"removed client {client.name} ({client.client_id}); its tokens no longer work")
        return 0

    return _async(config, go)


def _token(config: Config, args: argparse.Namespace) -> int:
    """Signs with the daemon's key directly: whoever can read the key file could anyway."""
    from obd.auth import narrow, tokens
    from obd.errors import NotFound

    async def go(service: Service) -> int:
        client = await service.clients.named(args.client)
        if client is None:
            raise NotFound(f"no client named {args.client!r}")
        issuer = tokens.Issuer(tokens.signing_key(config), config)
        print(issuer.issue(client.client_id, narrow(client.scopes, args.scope)).access_token)
        return 0

    return _async(config, go)


def _plugins(config: Config, args: argparse.Namespace) -> int:
    registry = load_plugins(config)
    for found in registry.found:
        if found.error:
            status = f"error: {found.error}"
        elif found.overridden_by:
            status = f"overridden by {found.overridden_by}"
        elif found.provider is not None:
            status = "ok (history provider" + (
                f": {found.provider.description})" if found.provider.description else ")"
            )
        else:
            status = "ok" + (
                f" ({found.spec.description})" if found.spec and found.spec.description else ""
            )
        print(f"{found.name}\t{found.origin}\t{status}")
    failed = any(found.error for found in registry.found)
    from obd.history.registry import specs

    for name, spec in specs().items():  # built in, or from `obd.history` entry points
        if name in registry.providers:
            continue  # a directory's provider of that name (listed above) wins
        if isinstance(spec, str):
            print(f"{name}\thistory provider\terror: {spec}")
            failed = True
        else:
            print(f"{name}\thistory provider\tok ({spec.description})")
    for warning in registry.warnings:
        print(f"obd: warning: {warning}", file=sys.stderr)
    return 1 if failed else 0


def _check(config: Config, args: argparse.Namespace) -> int:
    """`obd run`'s start-up checks through the same functions, stopping where `run`
    would stop with the line `run` would print; also plugins that failed to load (`run`
    warns and serves the others) and the file's integrity (`PRAGMA quick_check`)."""
    registry = load_plugins(config)
    problems = [f"plugin {f.name} ({f.origin}): {f.error}" for f in registry.found if f.error]
    try:
        for check in start_checks(config, registry):
            check()
        _can_listen(config)
        asyncio.run(_vet_coins(config, registry))
    except ObdError as exc:
        problems.append(str(exc))
    else:
        problems += database_problems(config.database)
    for warning in registry.warnings:  # worth saying, but `run` starts with them too
        print(f"obd: warning: {warning}", file=sys.stderr)
    for problem in problems:
        print(f"obd: {problem}", file=sys.stderr)
    if not problems:
        print(f"ok: config, plugins ({', '.join(registry.names)}) and database {config.database}")
    print(f"codec core: {_codec_core()}")
    return EXIT_USER_ERROR if problems else 0


def _codec_core() -> str:
    from obd.storage import codec  # numpy: only for the commands that use it

    return codec.CORE


def _can_listen(config: Config) -> None:
    from obd.daemon import bind

    bind(config.server.host, config.server.port).close()


async def _vet_coins(config: Config, registry: Plugins) -> None:
    exchanges = Exchanges(registry, config.exchanges)
    try:
        await vet_config_coins(exchanges, config)
    finally:
        await exchanges.close()


_COMMANDS: dict[tuple[str, str | None], Callable[[Config, argparse.Namespace], int]] = {
    ("run", None): _run,
    ("check", None): _check,
    ("plugins", None): _plugins,
    ("mcp", None): _mcp,
    ("coins", "list"): _coins_list,
    ("coins", "add"): _coins_add,
    ("coins", "remove"): _coins_remove,
    ("backup", None): _backup,
    ("status", None): _status,
    ("export", None): _export,
    ("backfill", None): _backfill,
    ("client", "add"): _client_add,
    ("client", "list"): _client_list,
    ("client", "remove"): _client_remove,
    ("token", None): _token,
}
