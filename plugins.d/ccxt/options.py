"""`[exchanges.<id>]` for a ccxt exchange, the depths each exchange's book endpoints
accept, and the ccxt constructor config obd builds from both."""

from typing import Annotated, Any

import msgspec

Seconds = Annotated[float, msgspec.Meta(gt=0)]


class CcxtOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`[exchanges.<id>]` for an exchange served by ccxt. Every key is optional."""

    options: dict[str, Any] = {}  # ccxt `options`, merged over obd's defaults
    urls: dict[str, Any] = {}  # ccxt `urls` overrides, deep-merged (testnets, emulators)
    live: bool = True  # false: REST snapshots at each slot even where a websocket exists
    timeout_s: Seconds = 10.0  # each REST request and websocket connect
    rate_limit_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None  # ccxt `rateLimit`
    cooldown_s: Seconds = 10.0  # exchange-wide pause after a 429 that names no Retry-After
    markets_ttl_s: Seconds = 3600.0  # listings are reloaded this often (delistings, halts)
    ping_interval_s: Seconds = 10.0  # websocket pings (ccxt `keepAlive`)
    stale_after_s: Seconds = 30.0  # no frame for this long: the connection is dead
    depth_limits: list[int] | None = None  # depths the REST book endpoint accepts
    ws_depth_limits: list[int] | None = None  # depths `watch_order_book` accepts
    api_key: str | None = None  # optional; public market data needs none
    secret: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never show credentials, whoever prints this
        hidden = {"api_key", "secret", "password"}
        shown = (
            f"{name}={'***' if name in hidden else repr(getattr(self, name))}"
            for name in self.__struct_fields__
            if getattr(self, name) not in (None, {})
        )
        return f"CcxtOptions({', '.join(shown)})"


class Depths(msgspec.Struct, frozen=True):
    """What an exchange's book endpoints accept; None: any number up to its maximum."""

    rest: tuple[int, ...] | None = None
    ws: tuple[int, ...] | None = None
    # A websocket book kept from a REST snapshot plus diffs (binance) is asked for
    # this many times the depth stored, so the touch can wander before it resyncs.
    ws_margin: int = 1


_BINANCE = (5, 10, 20, 50, 100, 500, 1000, 5000)
_BINANCE_FUTURES = (5, 10, 20, 50, 100, 500, 1000)  # /fapi/v1/depth, /dapi/v1/depth
# Every Binance market keeps its websocket book from a REST snapshot plus diffs, and
# ccxt trims that book to the limit it was watched with. Watched at exactly `depth`
# (margin 1), the first level removed inside the top `depth` leaves fewer than
# `depth` known levels, and the range guard rightly resyncs: on USD-M and COIN-M at
# depth 50 that was every few hundred ms, so nearly every slot fell back to REST.
KNOWN_DEPTHS = {
    "binance": Depths(rest=_BINANCE, ws=_BINANCE, ws_margin=4),
    "binanceus": Depths(rest=_BINANCE, ws=_BINANCE, ws_margin=4),
    "binanceusdm": Depths(rest=_BINANCE_FUTURES, ws=_BINANCE_FUTURES, ws_margin=4),
    "binancecoinm": Depths(rest=_BINANCE_FUTURES, ws=_BINANCE_FUTURES, ws_margin=4),
    "kraken": Depths(ws=(10, 25, 100, 500, 1000)),
    "okx": Depths(ws=(5, 400)),
    "bybit": Depths(ws=(1, 50, 200, 1000)),
}


# Exchanges that send a book's snapshot only when its topic is subscribed, and refuse
# to subscribe a topic twice on a connection (bybit: "error:already subscribed"), so
# ccxt's resubscribe after obd threw a book away fails for good: obd unsubscribes
# first. `un_watch_order_book` is told the depth subscribed, or it names ccxt's
# default depth (bybit spot: 50), another topic, and leaves the real one subscribed.
UNSUBSCRIBE_TO_RESYNC = frozenset({"bybit"})


def unwatch_params(exchange_id: str, limit: int) -> dict[str, Any]:
    """The params `un_watch_order_book` needs to name the topic `limit` subscribed."""
    return {"limit": limit} if exchange_id in UNSUBSCRIBE_TO_RESYNC else {}


def depths(exchange_id: str, options: CcxtOptions) -> Depths:
    """The exchange's known depths, overridden by the user's `depth_limits` keys."""
    known = KNOWN_DEPTHS.get(exchange_id, Depths())
    return Depths(
        rest=tuple(options.depth_limits) if options.depth_limits else known.rest,
        ws=tuple(options.ws_depth_limits) if options.ws_depth_limits else known.ws,
        ws_margin=known.ws_margin,
    )


def accepted(choices: tuple[int, ...] | None, want: int) -> int:
    """The smallest accepted depth that covers `want` (else the largest there is)."""
    if not choices:
        return want
    return min((c for c in choices if c >= want), default=max(choices))


def ccxt_config(options: CcxtOptions) -> dict[str, Any]:
    """The ccxt constructor's config: obd's defaults, then the user's `[exchanges.<id>]`."""
    ccxt_options: dict[str, Any] = {
        # ccxt retries a failed snapshot at once, 3 times: obd retries with backoff
        "watchOrderBook": {"maxRetries": 1},
    }
    _merge(ccxt_options, options.options)
    config: dict[str, Any] = {
        "enableRateLimit": True,  # ccxt spaces requests by each endpoint's weight
        "timeout": int(options.timeout_s * 1000),
        "options": ccxt_options,
        "urls": options.urls,
        "streaming": {"keepAlive": int(options.ping_interval_s * 1000), "maxPingPongMisses": 2},
    }
    if options.rate_limit_ms is not None:
        config["rateLimit"] = options.rate_limit_ms
    credentials = {"apiKey": options.api_key, "secret": options.secret}
    credentials["password"] = options.password
    config.update({key: value for key, value in credentials.items() if value is not None})
    return config


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
