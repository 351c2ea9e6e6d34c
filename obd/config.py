"""Typed, strict configuration read once from TOML; errors name the key's path."""

import os
import re
from pathlib import Path
from typing import Annotated, Any

import msgspec

from obd.errors import BadRequest, ConfigError
from obd.times import parse_interval

MAX_DEPTH = 5_000  # levels a side: the deepest book any major exchange serves

Port = Annotated[int, msgspec.Meta(ge=0, le=65_535)]
Depth = Annotated[int, msgspec.Meta(ge=1, le=MAX_DEPTH)]
Interval = str | int


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class Server(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 8787  # 0 picks a free port (tests)


class Storage(_Section, frozen=True):
    path: str = "obd.sqlite"  # relative to the config file


class Collection(_Section, frozen=True):
    interval: Interval = "5m"
    depth: Depth = 100


class Plugins(_Section, frozen=True):
    dirs: list[str] = msgspec.field(default_factory=lambda: ["plugins.d"])
    entry_points: bool = True  # also load pip-installed plugins (group `obd.plugins`)


class Auth(_Section, frozen=True):
    enabled: bool = False
    token_lifetime_s: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 3_600


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
    exchanges: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    coins: list[CoinEntry] = msgspec.field(default_factory=list)
    # Not a TOML key: where relative paths start (the config file's directory).
    base_dir: str = "."

    @property
    def database(self) -> Path:
        return Path(self.base_dir, self.storage.path)

    @property
    def plugin_dirs(self) -> list[Path]:
        return [Path(self.base_dir, entry) for entry in self.plugins.dirs]

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
    return config


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
