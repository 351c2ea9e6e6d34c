"""Finding exchange plugins: the `obd.plugins` entry-point group first (the shipped
`sim` and `ccxt` register there, as any pip-installed plugin does), then `*.py` files
or packages in the plugin directories; a later source of a name overrides an earlier one.

A plugin that fails to load is reported with where it came from and why; the
others still load. A directory entry that is the very file an entry point already
loaded (the checkout's plugins.d under an editable install) is skipped, not loaded
twice. A missing directory is a warning: the entry points still serve. The kernel asks
`Plugins.spec_for(exchange_id)`; it never names an exchange itself.
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
from obd.history.provider import ProviderSpec
from obd.plugin import PluginSpec

ENTRY_POINT_GROUP = "obd.plugins"
# Directory plugins live under this name in sys.modules: not `obd_plugins`, the shipped
# package, so a drop-in `sim.py` overriding the built-in never replaces its module.
MODULE_PREFIX = "obd_dropins"


class Found(msgspec.Struct, frozen=True):
    """One plugin source and what came of loading it."""

    name: str
    origin: str  # a file path or "entry point <module:attr>"
    spec: PluginSpec | None = None
    error: str | None = None
    overridden_by: str | None = None
    # A directory module exporting `PROVIDER` (a history provider, docs/HISTORY.md)
    # instead of `PLUGIN`: found here, built by `obd.history.registry`.
    provider: ProviderSpec | None = None


class Plugins:
    """The plugins `discover` loaded; exact names win over generic plugins' `serves()`."""

    def __init__(self, found: Sequence[Found] = (), warnings: Sequence[str] = ()) -> None:
        self.found = list(found)
        self.warnings = list(warnings)  # worth saying, not failures: a missing directory
        self._by_name = {f.name: f.spec for f in self.found if f.spec and not f.overridden_by}

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    @property
    def providers(self) -> dict[str, ProviderSpec]:
        """History providers found in the plugin directories, by name (later ones win)."""
        return {f.provider.name: f.provider for f in self.found if f.provider is not None}

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


def discover(
    dirs: Sequence[Path], *, use_entry_points: bool = True, optional_dirs: bool = False
) -> Plugins:
    """`optional_dirs`: the directories are the default ones, not named in the config, so
    a missing one is no news."""
    found: list[Found] = []
    loaded: set[Path] = set()  # the files entry points loaded
    if use_entry_points:
        found += _from_entry_points(loaded)
    warnings = []
    for directory in dirs:
        if directory.is_dir():
            found += _from_directory(directory, loaded)
        elif directory.exists():
            found.append(Found(directory.name, str(directory), error="not a directory"))
        elif not optional_dirs:
            warnings.append(f"plugin directory {directory} does not exist (skipped)")
    return Plugins(_mark_overrides(found), warnings)


def _mark_overrides(found: list[Found]) -> list[Found]:
    """Later sources of the same name override earlier ones (which stay listed)."""
    winner = {f.name: i for i, f in enumerate(found) if f.spec is not None}
    return [
        f
        if winner.get(f.name, i) == i or f.spec is None
        else msgspec.structs.replace(f, overridden_by=found[winner[f.name]].origin)
        for i, f in enumerate(found)
    ]


def _from_entry_points(loaded: set[Path]) -> list[Found]:
    result = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {point.value}"
        try:
            result.append(_checked(point.name, origin, point.load()))
        except (Exception, SystemExit) as exc:  # a broken plugin must not take obd down
            result.append(Found(point.name, origin, error=_describe(exc)))
        if (file := getattr(sys.modules.get(point.module), "__file__", None)) is not None:
            loaded.add(Path(file).resolve())
    return result


def _from_directory(directory: Path, loaded: set[Path]) -> list[Found]:
    if directory.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        # Anyone who can write here can run code as obd.
        return [Found(directory.name, str(directory), error="directory is group/world-writable")]
    result = []
    for path in sorted(directory.iterdir()):
        name = path.stem if path.suffix == ".py" else path.name
        is_package = path.is_dir() and (path / "__init__.py").is_file()
        if name.startswith("_") or not (path.suffix == ".py" or is_package):
            continue
        if (path / "__init__.py" if is_package else path).resolve() in loaded:
            continue  # an entry point already loaded this very file
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
    return getattr(module, "PLUGIN", None) or getattr(module, "PROVIDER", None)


def _checked(name: str, origin: str, plugin: object) -> Found:
    if isinstance(plugin, ProviderSpec):
        return Found(plugin.name, origin, provider=plugin)
    if not isinstance(plugin, PluginSpec):
        return Found(name, origin, error="does not export PLUGIN = obd.plugin.PluginSpec(...)")
    return Found(plugin.name, origin, spec=plugin)


def _describe(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    line = f" (line {where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{line}"
