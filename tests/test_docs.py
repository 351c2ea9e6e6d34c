"""The docs list every config key, CLI command and route the code has."""

import re
from pathlib import Path
from typing import Any

import msgspec

from obd.cli import _COMMANDS
from obd.config import Config
from obd.http.routes import HANDLERS

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
    for handler in HANDLERS:
        for path in handler.paths:
            for method in handler.http_methods:
                assert f"{method} {path}" in text, f"{method} {path}"
