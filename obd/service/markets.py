"""Discovery: the exchanges obd can collect from, and the markets each lists."""

import msgspec

from obd.errors import BadRequest
from obd.exchanges import Exchanges
from obd.plugin import ListsMarkets, Market


class MarketView(msgspec.Struct, frozen=True):
    symbol: str
    base: str
    quote: str
    type: str  # spot, swap, future, option
    active: bool  # trading now
    collected: bool  # obd collects it already (list_coins has it)


class MarketPage(msgspec.Struct, frozen=True):
    exchange: str
    markets: list[MarketView]
    total: int  # markets matching the query, all pages
    next_offset: int | None  # pass as `offset` for the next page; None: that was all


class ExchangeView(msgspec.Struct, frozen=True):
    id: str
    plugin: str
    synthetic: bool  # made-up data (the `sim` plugin)
    collected: int  # coins obd collects there


async def markets(
    exchanges: Exchanges,
    exchange_id: str,
    query: str | None,
    limit: int,
    offset: int,
    collected: set[str],
) -> MarketPage:
    """One page of the exchange's markets matching `query`, best matches first."""
    source = exchanges.get(exchange_id)
    if not isinstance(source, ListsMarkets):
        raise BadRequest(
            f"exchange: the plugin serving {exchange_id!r} cannot list its markets; "
            "check_availability asks about one symbol"
        )
    found = [m for m in await source.list_markets() if _matches(m, query)]
    found.sort(key=lambda m: _rank(m, query))
    page = found[offset : offset + limit]
    return MarketPage(
        exchange=exchange_id,
        markets=[
            MarketView(m.symbol, m.base, m.quote, m.type, m.active, m.symbol in collected)
            for m in page
        ],
        total=len(found),
        next_offset=offset + limit if offset + limit < len(found) else None,
    )


def _matches(market: Market, query: str | None) -> bool:
    """A substring of the symbol (`btc`, `BTC/`, `/USDT`), or `BASE/QUOTE` exactly."""
    if not query:
        return True
    wanted = query.strip().upper()
    return wanted in market.symbol.upper() or wanted == f"{market.base}/{market.quote}".upper()


def _rank(market: Market, query: str | None) -> tuple[bool, bool, bool, str]:
    """Exact symbol first, then the base asked for, then trading ones, then by symbol."""
    wanted = (query or "").strip().upper()
    return (
        market.symbol.upper() != wanted,
        market.base.upper() != wanted.split("/")[0],
        not market.active,
        market.symbol,
    )


def exchange_views(exchanges: Exchanges, coins_per_exchange: dict[str, int]) -> list[ExchangeView]:
    """Every exchange id the loaded plugins serve; whether a plugin's data is synthetic
    is asked of one instance per plugin (creating one opens nothing)."""
    served = exchanges.plugins.exchange_ids()
    synthetic: dict[str, bool] = {}
    for exchange_id, plugin in served.items():
        if plugin not in synthetic:
            synthetic[plugin] = exchanges.get(exchange_id).synthetic
    return [
        ExchangeView(exchange_id, plugin, synthetic[plugin], coins_per_exchange.get(exchange_id, 0))
        for exchange_id, plugin in served.items()
    ]
