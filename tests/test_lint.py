"""ruff is part of the suite, so CI keeps the code as clean as review does."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_ruff_check_is_clean() -> None:
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


PYTHON = [str(REPO / name) for name in ("obd", "plugins.d", "tests", "benchmarks")]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_ruff_format_is_clean() -> None:
    command = [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", *PYTHON]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_mypy_strict_is_clean() -> None:
    """`mypy --strict` over obd/ and the shipped plugins (pyproject's [tool.mypy])."""
    command = [sys.executable, "-m", "mypy", "--no-incremental", "obd"]
    plugins = [sys.executable, "-m", "mypy", "--no-incremental", "--strict"]
    plugins += [str(REPO / "plugins.d" / "sim.py"), str(REPO / "plugins.d" / "ccxt")]
    for args in (command, plugins):
        result = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stdout + result.stderr
