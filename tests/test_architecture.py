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


@pytest.mark.parametrize("path", KERNEL, ids=lambda p: str(p.relative_to(REPO)))
def test_kernel_never_names_an_exchange(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value.lower() not in EXCHANGE_NAMES, f"{path.name}: {node.value!r}"


@pytest.mark.parametrize("path", KERNEL, ids=lambda p: str(p.relative_to(REPO)))
def test_layers(path: Path) -> None:
    """Storage knows nothing of serving; nothing but the daemon and CLI reach the HTTP app."""
    imports = _imports(path)
    relative = path.relative_to(REPO / "obd").as_posix()
    if relative.startswith("storage/"):
        assert not {n for n in imports if n.startswith(("obd.http", "obd.service", "obd.collect"))}
    if not relative.startswith(("http/", "daemon.py", "cli.py")):
        assert not {n for n in imports if n.startswith("obd.http")}


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
