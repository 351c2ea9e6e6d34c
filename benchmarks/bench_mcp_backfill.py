"""MCP's back-fill before a read (`HistoryStream.fill`) against the WebSocket's path
(`HistoryStream.chunks`, every stored book read and streamed), on the same range.

A 1 s sim series, depth 100, `--slots` stored slots with a hole of `--hole` slots in
the middle (final: before the last stored slot), in a SQLite file of its own for each
path, so both fill the same hole from sim's history. `fill` finds the holes from the
index alone, `chunks` decodes every stored book: the ratio is what MCP saves by not
streaming what it then reads with its own, smaller query.

    python benchmarks/bench_mcp_backfill.py [--slots 50000] [--hole 2000] [--json]
"""

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from obd.config import load
from obd.context import open_runtime
from tests.conftest import write_config
from tests.ws_support import now_slot, prefill

S = 1000


async def measure(config: Path, start: int, end: int, mode: str) -> tuple[float, int, int]:
    """(seconds, rows back-filled, rows in the range) of one path over [start, end)."""
    async with open_runtime(load(config)) as runtime:
        service = runtime.service
        allowance = service.backfill_allowance("bench")
        stream = await service.holes("sim", "BTC/USDT", start, end, allowance)
        began = time.perf_counter()
        if mode == "fill":
            await stream.fill()
        else:
            async for _chunk in stream.chunks():
                pass
        return time.perf_counter() - began, stream.backfilled, stream.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=50_000)
    parser.add_argument("--hole", type=int, default=2_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    start = now_slot() - (args.slots + 600) * S
    end = start + args.slots * S
    middle = start + (args.slots - args.hole) // 2 * S
    spans = [(start, middle), (middle + args.hole * S, end)]
    result: dict[str, float | int] = {"slots": args.slots, "hole": args.hole}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prefill(work / "seed.sqlite", spans, added_ts=start - 1, depth=100)
        for mode in ("fill", "chunks"):
            directory = work / mode
            directory.mkdir()
            shutil.copy(work / "seed.sqlite", directory / "obd.sqlite")
            seconds, backfilled, count = asyncio.run(
                measure(write_config(directory), start, end, mode)
            )
            assert (backfilled, count) == (args.hole, args.slots), (mode, backfilled, count)
            result[f"{mode}_s"] = round(seconds, 3)
    result["ratio_fill_to_chunks"] = round(float(result["fill_s"]) / float(result["chunks_s"]), 3)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")


if __name__ == "__main__":
    main()
