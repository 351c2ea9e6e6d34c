"""Replay of recorded exchange traffic through an emulator on 127.0.0.1.

- `recording`: the format (JSON lines, optionally zstd) and its checked reader;
- `venue`: the `Venue` seam, one module an exchange (`venues/<ccxt id>.py`);
- `server`: the generic server (connections, pacing, sent log, fault controls);
- `truth`: the true books at any wall time, from a recording and a sent log.

Command line (stable: tests and benchmarks use it):

    python -m tests.emulator replay --exchange <ccxt id> --recording FILE
        [--speed 1.0] [--port 0] [--sent-log FILE] [--start listen|connect]

prints `{"port", "exchange", "symbols", "exchanges_config"}` once listening and
stops on SIGTERM (`--start connect`: the recording's clock starts at the first
websocket connection rather than once listening).

The sent log has one JSON line per websocket frame sent, `{"wall_ms", "line",
"conn"}` (`line`: the recording's 1-based line; null for a frame the venue made
up: a reply, a pong, a synthesised snapshot), and one line `{"wall_ms", "line",
"conn": null}` for each recorded frame applied to the true books but sent to no
one (no subscriber, or dropped by a fault), so that every `recv` line appears,
first at the instant it was applied. A delisting is logged as `{"wall_ms",
"line": null, "conn": null, "delisted": "<symbol>"}`: from then on the symbol's
frames stop and its true book is frozen (a halted market).

Fault controls, loopback HTTP on the same port (symbols are ccxt symbols,
URL-encoded; each answers `{"ok": true}` or 400 with `{"error"}`):

    POST /__emulator__/drop?symbol=S&n=N      the next N frames of S are not sent
    POST /__emulator__/stall                  open sockets go silent (no frames, no pongs)
    POST /__emulator__/close                  close every websocket (code 1001)
    POST /__emulator__/rest-errors?status=429&n=N[&retry_after_s=1][&path=part]
                                              the next N REST calls (whose path
                                              contains `part`) answer 429 or 503
    POST /__emulator__/fault?kind=checksum|sequence&symbol=S   the next frame of S
    POST /__emulator__/delist?symbol=S
    GET  /__emulator__/book?symbol=S[&depth=N]   the true book now (`Book` as JSON)
    GET  /__emulator__/stats                  frames sent, connections, REST calls, 404s

In-process, `ReplayEmulator` (server.py) does the same as methods, from a thread.
"""
