"""Low disk: free space on the database's filesystem under `[storage] low_disk_mib` is a
warning in /healthz, /readyz and the service's stats, never a failure by itself. The
threshold is set above the real free space (and at 0), so no filesystem is filled."""

import asyncio
import shutil
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from obd.auth import OpenAccess
from obd.config import load
from obd.context import open_service
from obd.http.app import create_app
from obd.service import Stats
from tests.conftest import write_config

HUGE_MIB = 1 << 40  # more than any disk has free


def _probe(tmp_path: Path, low_disk_mib: int) -> tuple[dict[str, Any], dict[str, Any], Stats]:
    path = write_config(tmp_path)
    storage = '[storage]\npath = "obd.sqlite"\n'
    path.write_text(path.read_text().replace(storage, f"{storage}low_disk_mib = {low_disk_mib}\n"))

    async def go() -> tuple[dict[str, Any], dict[str, Any], Stats]:
        async with open_service(load(path)) as service:
            app = create_app(service, OpenAccess())
            async with AsyncTestClient(app, base_url="http://127.0.0.1") as client:
                alive = await client.get("/healthz")
                ready = await client.get("/readyz")
            assert alive.status_code == ready.status_code == 200  # a warning, not a failure
            return alive.json(), ready.json(), service.stats()

    return asyncio.run(go())


def test_free_space_under_the_threshold_is_a_warning(tmp_path: Path) -> None:
    alive, ready, stats = _probe(tmp_path, HUGE_MIB)
    free = shutil.disk_usage(tmp_path).free
    for body in (alive, ready):
        assert body["status"] == "ok"
        assert abs(body["disk_free_bytes"] - free) < 256 * 1024 * 1024
        [warning] = body["warnings"]
        assert warning.startswith("low disk: ")
        assert f"low_disk_mib = {HUGE_MIB}" in warning
    assert stats.disk_low
    assert stats.disk_free_bytes is not None


def test_no_warning_above_the_threshold(tmp_path: Path) -> None:
    alive, ready, stats = _probe(tmp_path, 0)
    assert alive["warnings"] == ready["warnings"] == []
    assert alive["disk_free_bytes"] > 0
    assert not stats.disk_low
