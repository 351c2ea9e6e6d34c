"""`python -m tests.emulator [--symbols N]`: serve the emulator until interrupted and
print `{"url": ..., "urls": {...}}` (the ccxt `urls` to point binance at it) on stdout."""

import argparse
import json
import signal
import threading

from tests.emulator.server import Emulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator")
    parser.add_argument("--symbols", type=int, default=0, help="extra symbols C000USDT, ...")
    parser.add_argument("--update-ms", type=int, default=100)
    args = parser.parse_args()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with Emulator(extra_symbols=args.symbols, update_ms=args.update_ms, record=False) as emu:
        print(json.dumps({"url": emu.url, "urls": emu.ccxt_urls()}), flush=True)
        done.wait()


if __name__ == "__main__":
    main()
