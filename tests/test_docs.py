"""The docs list every config key, CLI command, route, error code, gap reason and
plugin-contract member the code has, and their examples run."""

import re
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from obd import errors, plugin
from obd.cli import _COMMANDS
from obd.config import Config
from obd.errors import (
    ChecksumFailed,
    ConfigError,
    Disconnected,
    ExchangeError,
    NotSynced,
    RateLimited,
    codes,
)
from obd.exchanges.discovery import discover
from obd.http import page, summary
from obd.http.routes import HANDLERS
from obd.model import GAP_REASONS
from obd.testing import CHECKS

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"


def _keys(struct: type[msgspec.Struct], prefix: str = "") -> list[str]:
    keys = []
    for field in msgspec.structs.fields(struct):
        if field.name == "base_dir":
            continue
        path = f"{prefix}{field.name}"
        kind: Any = field.type
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            keys += _keys(kind, f"{path}.")
        elif getattr(kind, "__origin__", None) is dict:
            keys.append(f"{path}.<id>")
        else:
            keys.append(path)
    return keys


def test_config_doc_lists_every_key() -> None:
    text = (DOCS / "CONFIG.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)`", text, re.MULTILINE))
    assert set(_keys(Config)) - documented == set()


def test_readme_lists_every_command() -> None:
    text = README.read_text()
    for command, action in _COMMANDS:
        spelled = f"obd {command}" + (f" {action}" if action else "")
        assert spelled in text, spelled


def test_http_doc_lists_every_route() -> None:
    text = (DOCS / "HTTP.md").read_text()
    for handler in [*HANDLERS, *summary.HANDLERS, *page.HANDLERS]:
        for path in handler.paths:
            for method in handler.http_methods:
                assert f"{method} {path}" in text, f"{method} {path}"


def _section(doc: str, heading: str) -> str:
    text = (DOCS / doc).read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _first_column(section: str) -> set[str]:
    """Every `name` in the first cell of the section's table rows."""
    cells = re.findall(r"^\| ([^|]+) \|", section, re.MULTILINE)
    return {name for cell in cells for name in re.findall(r"`([^`(]+)", cell)}


def test_http_doc_lists_every_error_code() -> None:
    assert set(codes()) - _first_column(_section("HTTP.md", "Errors")) == set()


def test_each_error_code_is_defined_once() -> None:
    """A subclass either inherits its parent's code or names its own, never another's."""
    defined = [
        kind.__dict__["code"]
        for kind in vars(errors).values()
        if isinstance(kind, type) and issubclass(kind, errors.ObdError) and "code" in kind.__dict__
    ]
    assert len(defined) == len(set(defined)), sorted(defined)


def test_http_doc_lists_every_gap_reason() -> None:
    assert set(GAP_REASONS) - _first_column(_section("HTTP.md", "Coverage and gaps")) == set()


def test_plugins_doc_lists_the_whole_contract() -> None:
    """Every method of the plugin protocols, every PluginSpec field, every name
    obd.plugin exports, and the error each gap reason comes from."""
    text = (DOCS / "PLUGINS.md").read_text()
    contract = _first_column(_section("PLUGINS.md", "The contract"))
    for protocol in (plugin.Exchange, plugin.FetchesBooks, plugin.FetchesHistory):
        members = {
            name
            for name in vars(protocol)
            if not name.startswith("_") and callable(getattr(protocol, name))
        } | ({"synthetic"} if protocol is plugin.Exchange else set())
        for member in members:
            assert any(cell.startswith(member) for cell in contract), member
    for field in msgspec.structs.fields(plugin.PluginSpec):
        assert f"`{field.name}" in text, field.name
    for name in plugin.__all__:
        assert re.search(rf"`[^`]*\b{name}\b[^`]*`", text), name
    raised = _first_column(_section("PLUGINS.md", "Errors"))
    for error in (ChecksumFailed, Disconnected, ExchangeError, NotSynced, RateLimited):
        assert any(cell.startswith(error.__name__) for cell in raised), error.__name__
        assert f"| `{error.gap_reason}` |" in text, error.gap_reason


def _python_blocks(doc: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / doc).read_text(), re.DOTALL)


def test_plugins_doc_example_runs_as_written(tmp_path: Path) -> None:
    """The example plugin loads through obd's loader, passes the contract suite
    (run by the doc's own test snippet), and its options are checked by type."""
    example, snippet = _python_blocks("PLUGINS.md")
    plugins = tmp_path / "plugins"
    plugins.mkdir(mode=0o700)
    (plugins / "example.py").write_text(example)
    (found,) = discover([plugins], use_entry_points=False).found
    assert found.error is None, found.error
    assert found.spec is not None
    with pytest.raises(ConfigError) as refused:
        found.spec.options_for("example", {"price": -1})
    assert f"``{refused.value}``" in (DOCS / "PLUGINS.md").read_text()

    sys.path.insert(0, str(plugins))
    try:
        namespace: dict[str, Any] = {}
        exec(compile(snippet, "PLUGINS.md", "exec"), namespace)
        for check in CHECKS:
            namespace["test_contract"](check)
    finally:
        sys.path.remove(str(plugins))
        sys.modules.pop("example", None)
