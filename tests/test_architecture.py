"""Keeps the layers honest: imports parsed with `ast`, not trusted to review."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KERNEL = sorted((REPO / "obd").rglob("*.py"))
PLUGINS = sorted((REPO / "plugins.d").rglob("*.py"))
PLUGIN_MAY_IMPORT = {"obd.plugin"}  # the kit: it re-exports the errors and model types
EXCHANGE_NAMES = {"sim", "binance", "kraken", "okx", "bybit", "coinbase"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: str(p.relative_to(REPO)))
def test_plugins_import_only_the_contract(path: Path) -> None:
    from_obd = {name for name in _imports(path) if name == "obd" or name.startswith("obd.")}
    assert from_obd <= PLUGIN_MAY_IMPORT


# A history provider's map from obd's exchange ids to an archive's own is a table of
# names by nature (as a plugin is); it lives with the provider, and only there.
NAMES_EXCHANGES = {"obd/history/tardis.py"}


@pytest.mark.parametrize(
    "path",
    [p for p in KERNEL if p.relative_to(REPO).as_posix() not in NAMES_EXCHANGES],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_kernel_never_names_an_exchange(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value.lower() not in EXCHANGE_NAMES, f"{path.name}: {node.value!r}"


@pytest.mark.parametrize("path", KERNEL, ids=lambda p: str(p.relative_to(REPO)))
def test_layers(path: Path) -> None:
    """Nothing but the daemon and CLI reach the HTTP app."""
    imports = _imports(path)
    relative = path.relative_to(REPO / "obd").as_posix()
    if not relative.startswith(("http/", "daemon.py", "cli.py")):
        assert not {n for n in imports if n.startswith("obd.http")}


# -- the service is the only door ------------------------------------------------------

# What may reach storage's reader, writer and connections: the service layer, the
# composition root, the parts it wires below the service (client administration, the
# collector), storage itself, and research (which reads copied files, offline).
SERVICE_LAYER = ("service/", "context.py", "auth/clients.py", "collect/", "storage/", "research/")
STORAGE_INTERNALS = {"obd.storage.reader", "obd.storage.writer", "obd.storage.connect"}
# Entry points: each is a process's outermost layer, so none may import another; the
# CLI's dispatch imports them lazily (inside its command functions), and `python -m obd`
# runs the CLI.
ENTRY_POINTS = {"obd.cli", "obd.daemon", "obd.mcp.stdio"}
MAY_START = {"cli.py": ENTRY_POINTS - {"obd.cli"}, "__main__.py": {"obd.cli"}}
# What storage may import from obd: the vocabulary below it, never the layers above.
STORAGE_MAY_IMPORT = {"obd", "obd.errors", "obd.model", "obd.times", "obd.metrics", "obd.config"}


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(path): path for path in KERNEL}


def _resolved(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The obd modules an import statement loads (`from obd.storage import reader` is
    `obd.storage.reader`, `from obd.service import Service` is `obd.service`)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in MODULES}
    if node.module is None:
        return set()
    found = {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES} or (
        {node.module} if node.module in MODULES else set()
    )


def _all_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in _resolved(node)
    }


def _top_level_imports(path: Path) -> set[str]:
    """What importing the module loads at once: imports in its body (also under `if`
    and `try`), not those inside functions, nor those under `if TYPE_CHECKING:`."""
    found: set[str] = set()
    pending: list[ast.stmt] = list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found |= _resolved(node)
        elif isinstance(node, ast.If):
            checking = isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            pending += node.orelse if checking else [*node.body, *node.orelse]
        elif isinstance(node, ast.Try):
            pending += [*node.body, *node.orelse, *node.finalbody]
            pending += [stmt for handler in node.handlers for stmt in handler.body]
    return found


def _relative(path: Path) -> str:
    return path.relative_to(REPO / "obd").as_posix()


# Attributes that hold the parts below the service: `service.writer.call(...)`, or even
# `writer = service.writer` then `writer.backlog`, starts with reading one of them.
BELOW_THE_SERVICE = {"reader", "writer", "collector", "_reader", "_writer", "_collector"}


@pytest.mark.parametrize("path", KERNEL, ids=lambda p: str(p.relative_to(REPO)))
def test_only_the_service_layer_reaches_storage(path: Path) -> None:
    """Transports and entry points call the service (or what it hands out), never the
    store's reader, writer or connections, nor the collector: neither by import nor
    through an attribute (so no method of theirs is called either)."""
    if _relative(path).startswith(SERVICE_LAYER):
        return
    assert not _all_imports(path) & STORAGE_INTERNALS
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            assert node.attr not in BELOW_THE_SERVICE, (
                f"{_relative(path)}:{node.lineno}: .{node.attr} reaches below the service"
            )


@pytest.mark.parametrize("path", KERNEL, ids=lambda p: str(p.relative_to(REPO)))
def test_nothing_imports_an_entry_point(path: Path) -> None:
    relative = _relative(path)
    allowed = MAY_START.get(relative, set())
    assert not (_all_imports(path) & ENTRY_POINTS) - allowed
    if relative == "cli.py":  # its dispatch imports them when a command runs, not before
        assert not _top_level_imports(path) & ENTRY_POINTS


@pytest.mark.parametrize(
    "path", [p for p in KERNEL if _relative(p).startswith("storage/")], ids=_relative
)
def test_storage_imports_only_low_level_modules(path: Path) -> None:
    outside = {name for name in _all_imports(path) if not name.startswith("obd.storage")}
    assert outside <= STORAGE_MAY_IMPORT


def test_import_graph_has_no_cycle() -> None:
    """What each module imports when loaded (TYPE_CHECKING blocks excluded): no cycle,
    so any module can be imported first and layers cannot leak into each other."""
    graph = {name: _top_level_imports(path) - {name} for name, path in MODULES.items()}
    state: dict[str, str] = {}  # "open" while on the DFS stack, "done" after
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = "open"
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_heavy_imports_stay_lazy() -> None:
    """`import obd.cli` (every CLI call) must not pull the HTTP stack or uvloop."""
    import subprocess
    import sys

    heavy = "('litestar', 'uvicorn', 'uvloop', 'ccxt')"
    code = f"import sys, obd.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("path", KERNEL + PLUGINS, ids=lambda p: str(p.relative_to(REPO)))
def test_architecture_doc_lists_every_module(path: Path) -> None:
    """docs/ARCHITECTURE.md's module table names every module, as a backticked path."""
    table = (REPO / "docs" / "ARCHITECTURE.md").read_text().split("\n## Modules\n")[1]
    assert f"`{path.relative_to(REPO).as_posix()}`" in table.split("\n## ")[0]
