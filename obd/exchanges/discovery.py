"""Finding exchange plugins: `*.py` files or packages in the plugin directories
(later directories override earlier ones) and the `obd.plugins` entry-point group.

A plugin that fails to load is reported with where it came from and why; the
others still load. The kernel asks `Plugins.spec_for(exchange_id)`; it never
names an exchange itself.
"""

import importlib.util
import stat
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

import msgspec

from obd.errors import NotFound
from obd.plugin import PluginSpec

ENTRY_POINT_GROUP = "obd.plugins"
MODULE_PREFIX = "obd_plugins"  # plugin modules live under this name in sys.modules


class Found(msgspec.Struct, frozen=True):
    """One plugin source and what came of loading it."""

    name: str
    origin: str  # a file path or "entry point <module:attr>"
    spec: PluginSpec | None = None
    error: str | None = None
    overridden_by: str | None = None


class Plugins:
    """The plugins `discover` loaded; exact names win over generic plugins' `serves()`."""

    def __init__(self, found: Sequence[Found]) -> None:
        self.found = list(found)
        self._by_name = {f.name: f.spec for f in self.found if f.spec and not f.overridden_by}

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def spec_for(self, exchange: str) -> PluginSpec:
        if spec := self._by_name.get(exchange):
            if spec.serves is not None and not spec.serves(exchange):
                raise NotFound(_plugin_not_exchange(spec))
            return spec
        for spec in self._by_name.values():
            if spec.serves is not None and spec.serves(exchange):
                return spec
        raise NotFound(
            f"no plugin serves exchange {exchange!r} (plugins: {', '.join(self.names) or 'none'}; "
            "the MCP tool list_exchanges lists the exchange ids)"
        )

    def exchange_ids(self) -> dict[str, str]:
        """{exchange id: the plugin serving it}, every id the loaded plugins can name:
        a plain plugin its own name, a generic one those its `exchange_ids` lists."""
        served: dict[str, str] = {}
        for name, spec in sorted(self._by_name.items()):
            if spec.exchange_ids is not None:
                served.update(dict.fromkeys(spec.exchange_ids(), name))
        # exact names win over generic plugins, as in `spec_for`
        for name, spec in self._by_name.items():
            if spec.serves is None or spec.serves(name):
                served[name] = name
            else:
                served.pop(name, None)
        return dict(sorted(served.items()))


def _plugin_not_exchange(spec: PluginSpec) -> str:
    examples = (spec.exchange_ids() if spec.exchange_ids else [])[:3]
    named = f", e.g. {', '.join(repr(e) for e in examples)}" if examples else ""
    return (
        f"{spec.name!r} is the name of a plugin serving many exchanges, not an exchange id: "
        f"name the exchange itself{named} (the MCP tool list_exchanges lists them)"
    )


def discover(dirs: Sequence[Path], *, use_entry_points: bool = True) -> Plugins:
    found: list[Found] = []
    if use_entry_points:
        found += _from_entry_points()
    for directory in dirs:
        found += _from_directory(directory)
    return Plugins(_mark_overrides(found))


def _mark_overrides(found: list[Found]) -> list[Found]:
    """Later sources of the same name override earlier ones (which stay listed)."""
    winner = {f.name: i for i, f in enumerate(found) if f.spec is not None}
    return [
        f
        if winner.get(f.name, i) == i or f.spec is None
        else msgspec.structs.replace(f, overridden_by=found[winner[f.name]].origin)
        for i, f in enumerate(found)
    ]


def _from_entry_points() -> list[Found]:
    result = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {point.value}"
        try:
            result.append(_checked(point.name, origin, point.load()))
        except (Exception, SystemExit) as exc:  # a broken plugin must not take obd down
            result.append(Found(point.name, origin, error=_describe(exc)))
    return result


def _from_directory(directory: Path) -> list[Found]:
    if not directory.is_dir():
        return [Found(directory.name, str(directory), error="plugin directory does not exist")]
    if directory.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        # Anyone who can write here can run code as obd.
        return [Found(directory.name, str(directory), error="directory is group/world-writable")]
    result = []
    for path in sorted(directory.iterdir()):
        name = path.stem if path.suffix == ".py" else path.name
        is_package = path.is_dir() and (path / "__init__.py").is_file()
        if name.startswith("_") or not (path.suffix == ".py" or is_package):
            continue
        try:
            result.append(_checked(name, str(path), _load_module(name, path, is_package)))
        except (Exception, SystemExit) as exc:  # a broken plugin must not take obd down
            result.append(Found(name, str(path), error=_describe(exc)))
    return result


def _load_module(name: str, path: Path, is_package: bool) -> object:
    module_name = f"{MODULE_PREFIX}.{name}"
    location = path / "__init__.py" if is_package else path
    spec = importlib.util.spec_from_file_location(
        module_name, location, submodule_search_locations=[str(path)] if is_package else None
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # msgspec resolves a Struct's annotations through sys.modules: register first.
    sys.modules.setdefault(MODULE_PREFIX, ModuleType(MODULE_PREFIX))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return getattr(module, "PLUGIN", None)


def _checked(name: str, origin: str, plugin: object) -> Found:
    if not isinstance(plugin, PluginSpec):
        return Found(name, origin, error="does not export PLUGIN = obd.plugin.PluginSpec(...)")
    return Found(plugin.name, origin, spec=plugin)


def _describe(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    line = f" (line {where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{line}"
