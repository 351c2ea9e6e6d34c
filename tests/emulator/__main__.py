"""`python -m tests.emulator [--symbols N]`: serve the synthetic emulator until
interrupted and print `{"url": ..., "urls": {...}}` (the ccxt `urls` to point binance
at it) on stdout.

`python -m tests.emulator replay --exchange ID --recording FILE [--speed 1.0]
[--port 0] [--sent-log FILE] [--start listen|connect]`: replay a recording
(tests/emulator/replay) until SIGTERM and print `{"port", "exchange", "symbols",
"exchanges_config"}` once listening. A recording it cannot read is one line on
stderr naming the file and line, and exit code 2, before anything listens.
"""

import argparse
import json
import signal
import sys
import threading

from tests.emulator.server import Emulator


def main() -> None:
    if sys.argv[1:2] == ["replay"]:
        replay(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m tests.emulator")
    parser.add_argument("--symbols", type=int, default=0, help="extra symbols C000USDT, ...")
    parser.add_argument("--update-ms", type=int, default=100)
    args = parser.parse_args()
    done = _until_signalled()
    with Emulator(extra_symbols=args.symbols, update_ms=args.update_ms, record=False) as emu:
        print(json.dumps({"url": emu.url, "urls": emu.ccxt_urls()}), flush=True)
        done.wait()


def replay(argv: list[str]) -> None:
    from tests.emulator.replay.recording import RecordingError
    from tests.emulator.replay.server import ReplayEmulator

    parser = argparse.ArgumentParser(prog="python -m tests.emulator replay")
    parser.add_argument("--exchange", required=True, help="the ccxt id the recording is of")
    parser.add_argument("--recording", required=True, help="JSON lines, optionally zstd")
    parser.add_argument("--speed", type=float, default=1.0, help="2.0: twice the recorded pace")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sent-log", help="log every websocket frame sent here (JSON lines)")
    parser.add_argument(
        "--start",
        choices=("listen", "connect"),
        default="listen",
        help="start the recording's clock once listening, or at the first websocket",
    )
    args = parser.parse_args(argv)
    done = _until_signalled()
    try:
        emulator = ReplayEmulator(
            args.exchange,
            args.recording,
            speed=args.speed,
            port=args.port,
            sent_log=args.sent_log,
            start_on=args.start,
        )
    except (RecordingError, ValueError, OSError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        sys.exit(2)
    with emulator:
        print(json.dumps(emulator.info()), flush=True)
        done.wait()


def _until_signalled() -> threading.Event:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    return done


if __name__ == "__main__":
    main()
