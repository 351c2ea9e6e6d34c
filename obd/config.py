"""Typed, strict configuration read once from TOML; errors name the key's path."""

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from obd.errors import BadRequest, ConfigError
from obd.times import parse_interval

MAX_DEPTH = 5_000  # levels a side: the deepest book any major exchange serves

Port = Annotated[int, msgspec.Meta(ge=0, le=65_535)]
Depth = Annotated[int, msgspec.Meta(ge=1, le=MAX_DEPTH)]
Interval = str | int
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}|\[?[0-9A-Fa-f:.]{2,45}\]?")


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class Server(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 8787  # 0 picks a free port (tests)
    # With auth off, names besides loopback and `host` that a request's Host or Origin may
    # use (any port): a page of any other name is refused, a DNS-rebinding defence.
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    # The URL clients reach obd at (a proxy's, say), for the links obd hands out (/mcp's
    # 401, the OAuth metadata); empty: the request's Host if it names this machine.
    public_url: str = ""


class Storage(_Section, frozen=True):
    path: str = "obd.sqlite"  # relative to the config file
    # Books waiting for the writer, MiB at most (an estimate); past it, while commits fail
    # or lag, each new slot is recorded as a `storage_full` gap instead.
    queue_mib: Annotated[int, msgspec.Meta(ge=1)] = 128
    # Free space under this on the database's filesystem is a warning in health and
    # stats (not a failure): time to make room before books become storage_full gaps.
    low_disk_mib: Annotated[int, msgspec.Meta(ge=0)] = 1024


class Collection(_Section, frozen=True):
    interval: Interval = "5m"
    depth: Depth = 100


class Plugins(_Section, frozen=True):
    # Drop-in directories, relative to the config file. None (not in the file): plugins.d
    # beside the config if it exists; a directory named here that is missing is a warning.
    dirs: list[str] | None = None
    entry_points: bool = True  # also load pip-installed plugins (group `obd.plugins`)


class ExternalIssuer(_Section, frozen=True):
    """Tokens from an existing OAuth server, checked against its published keys."""

    issuer: str = ""  # empty: no external issuer
    audience: str = ""
    jwks_url: str = ""  # fetched and cached; fetched again on an unknown `kid`
    jwks_file: str = ""  # relative to the config file
    algorithms: list[Literal["RS256", "ES256", "PS256", "Ed25519"]] = msgspec.field(
        default_factory=lambda: ["RS256", "ES256"]  # asymmetric only: no key confusion
    )
    refresh_s: Annotated[float, msgspec.Meta(ge=1)] = 3_600


class Auth(_Section, frozen=True):
    enabled: bool = False
    token_lifetime_s: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 3_600
    issuer: str = "obd"  # `iss` of the tokens obd signs
    audience: str = "obd"  # `aud` of the tokens obd signs and accepts
    algorithm: Literal["ES256", "HS256"] = "ES256"
    key_file: str = ""  # ES256 private key (JWK); empty: obd-signing-key.jwk beside the database
    secret: str = ""  # HS256 only: at least 32 bytes
    leeway_s: Annotated[int, msgspec.Meta(ge=0, le=300)] = 30  # clock skew allowed on exp/nbf/iat
    max_failures: Annotated[int, msgspec.Meta(ge=1)] = 5  # per client and per address...
    failure_window_s: Annotated[int, msgspec.Meta(ge=1)] = 60  # ...in this window, then 429
    external: ExternalIssuer = ExternalIssuer()


class Tardis(_Section, frozen=True):
    """The archive provider: Tardis.dev downloadable CSV day files (docs/HISTORY.md)."""

    base_url: str = "https://datasets.tardis.dev"
    api_key: str = ""  # sent as a bearer token when set
    # obd exchange id -> the archive's exchange id, beside (and over) the built-in table.
    exchanges: dict[str, str] = msgspec.field(default_factory=dict)
    # Which files to read, in order: the first the archive has for a day is used.
    data_types: list[Literal["incremental_book_L2", "book_snapshot_25", "book_snapshot_5"]] = (
        msgspec.field(default_factory=lambda: ["incremental_book_L2"])
    )
    cache_dir: str = ""  # relative to the config file; empty: no cache
    cache_mib: Annotated[float, msgspec.Meta(gt=0)] = 2_048  # oldest day files go first past it
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30
    retries: Annotated[int, msgspec.Meta(ge=0, le=20)] = 5  # per file: 429, 5xx, cut downloads
    max_retry_after_s: Annotated[float, msgspec.Meta(ge=0)] = 60  # longer waits: a gap


class Peer(_Section, frozen=True):
    """The peer provider: another obd's `/v1/books` (docs/HISTORY.md)."""

    url: str = ""  # e.g. "http://10.0.0.2:8787"; empty: no peer
    token: str = ""  # a bearer token with the peer's `read` scope
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30


class History(_Section, frozen=True):
    """Back-fill (a WebSocket `history` request fetching what storage lacks from the
    plugin, and storing it) is a write: it is capped, in rows fetched, and metered per
    client and for the whole daemon (`obd/service/backfill_limits.py`)."""

    backfill_rows_per_request: Annotated[int, msgspec.Meta(ge=0)] = 10_000
    backfill_rows_per_connection: Annotated[int, msgspec.Meta(ge=0)] = 20_000
    # Rows a minute (token buckets: a minute's worth at once, then at this rate); 0: none.
    backfill_rows_per_minute_per_client: Annotated[int, msgspec.Meta(ge=0)] = 10_000
    backfill_rows_per_minute: Annotated[int, msgspec.Meta(ge=0)] = 20_000
    backfill_concurrent_per_client: Annotated[int, msgspec.Meta(ge=1)] = 2
    backfill_concurrent: Annotated[int, msgspec.Meta(ge=1)] = 4
    # Where back-filled books come from, in order of preference; "plugin" is the exchange
    # plugin's own history (sim's). Per exchange id in `exchanges`.
    providers: list[str] = msgspec.field(default_factory=lambda: ["plugin"])
    exchanges: dict[str, list[str]] = msgspec.field(default_factory=dict)
    tardis: Tardis = Tardis()
    peer: Peer = Peer()
    options: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)  # other providers


class Mcp(_Section, frozen=True):
    # Where `obd mcp`'s download_history writes: relative to the config file; empty:
    # downloads/ beside the database. Nothing is written outside it.
    download_dir: str = ""


class CoinEntry(_Section, frozen=True):
    exchange: str
    symbol: str
    interval: Interval | None = None
    depth: Depth | None = None


class Config(_Section, frozen=True):
    server: Server = Server()
    storage: Storage = Storage()
    collection: Collection = Collection()
    plugins: Plugins = Plugins()
    auth: Auth = Auth()
    history: History = History()
    mcp: Mcp = Mcp()
    exchanges: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    coins: list[CoinEntry] = msgspec.field(default_factory=list)
    # Not a TOML key: where relative paths start (the config file's directory).
    base_dir: str = "."

    @property
    def database(self) -> Path:
        return Path(self.base_dir, self.storage.path)

    @property
    def signing_key_path(self) -> Path:
        """The ES256 key: configured, or beside the database (the state directory)."""
        if self.auth.key_file:
            return Path(self.base_dir, self.auth.key_file)
        return self.database.parent / "obd-signing-key.jwk"

    @property
    def download_dir(self) -> Path:
        if self.mcp.download_dir:
            return Path(self.base_dir, self.mcp.download_dir)
        return self.database.parent / "downloads"

    @property
    def plugin_dirs(self) -> list[Path]:
        dirs = ["plugins.d"] if self.plugins.dirs is None else self.plugins.dirs
        return [Path(self.base_dir, entry) for entry in dirs]

    @property
    def interval_ms(self) -> int:
        return parse_interval(self.collection.interval)


def locate(explicit: str | None) -> Path | None:
    """--config, then $OBD_CONFIG, then ./config.toml; None means built-in defaults."""
    named = explicit or os.environ.get("OBD_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    default = Path("config.toml")
    return default if default.is_file() else None


def load(path: Path | None) -> Config:
    if path is None:
        return _checked(Config())
    try:
        raw = path.read_bytes()
        config = msgspec.toml.decode(raw, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {key_path_message(str(exc))}") from None
    except (msgspec.DecodeError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "base_dir" in msgspec.toml.decode(raw):
        raise ConfigError(f"{path}: unknown key 'base_dir'")
    try:
        return _checked(msgspec.structs.replace(config, base_dir=str(path.resolve().parent)))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _checked(config: Config) -> Config:
    """Checks a type cannot express; each error names its key."""
    _check_interval(config.collection.interval, "collection.interval")
    for index, coin in enumerate(config.coins):
        if coin.interval is not None:
            _check_interval(coin.interval, f"coins[{index}].interval")
    _check_auth(config.auth)
    _check_public_url(config.server.public_url)
    for key, url in (
        ("history.tardis.base_url", config.history.tardis.base_url),
        ("history.peer.url", config.history.peer.url),
    ):
        if url and not url.startswith(("https://", "http://")):
            raise ConfigError(f"{key}: expected an http(s) URL, got {url!r:.60}")
    for index, name in enumerate(config.server.allowed_hosts):
        if not _HOST_NAME.fullmatch(name):
            raise ConfigError(
                f"server.allowed_hosts[{index}]: expected a host name or address without "
                f"scheme or port, got {name!r:.60}"
            )
    return config


def _check_public_url(url: str) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"server.public_url: expected an http(s) URL like 'https://obd.example.com', "
            f"got {url!r:.80}"
        )


def _check_auth(auth: Auth) -> None:
    if auth.algorithm == "HS256" and len(auth.secret.encode()) < 32:
        raise ConfigError("auth.secret: HS256 needs a secret of at least 32 bytes")
    external = auth.external
    if not external.issuer:
        return
    if not external.audience:
        raise ConfigError("auth.external.audience: required with auth.external.issuer")
    if bool(external.jwks_url) == bool(external.jwks_file):
        raise ConfigError("auth.external: give one of jwks_url and jwks_file")
    if external.jwks_url and not external.jwks_url.startswith(("https://", "http://")):
        raise ConfigError("auth.external.jwks_url: expected an http(s) URL")


def _check_interval(value: Interval, key: str) -> None:
    try:
        parse_interval(value, key)
    except BadRequest as exc:
        raise ConfigError(str(exc)) from None


def key_path_message(message: str) -> str:
    """msgspec says `... - at `$.server.port``; users know `server.port`."""
    match = re.search(r"(.*) - at `\$\.?(.*)`$", message)
    what, where = match.groups() if match else (message, "")
    if unknown := re.fullmatch(r"Object contains unknown field `(.*)`", what):
        key = f"{where}.{unknown[1]}" if where else unknown[1]
        return f"{key}: unknown key"
    return f"{where}: {what}" if where else what
