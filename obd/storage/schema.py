"""The database schema and its migrations, keyed on `PRAGMA user_version`.

docs/FORMAT.md describes every table for readers who do not use obd; keep the two
in step. A migration is appended, never edited: files in the wild carry old versions.
"""

import apsw

from obd import __version__
from obd.errors import StoreError

FORMAT_NAME = "obd-books"
# The `series` table holds the coins: the code calls a row a coin and its id `coin_id`;
# the table and column keep their names (files in the wild, docs/FORMAT.md).
PAGE_SIZE = 16_384  # bytes: ~30 snapshot rows a page; range scans run ~2x faster than at 4 KiB

_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per coin ever collected; the active rows are what the daemon collects.
CREATE TABLE series (
    id          INTEGER PRIMARY KEY,
    exchange    TEXT    NOT NULL,
    symbol      TEXT    NOT NULL,
    interval_ms INTEGER NOT NULL,
    interval    TEXT    NOT NULL,
    depth       INTEGER NOT NULL,
    active      INTEGER NOT NULL,
    synthetic   INTEGER NOT NULL,
    added_ts    INTEGER NOT NULL,
    tick_size   REAL,
    lot_size    REAL,
    UNIQUE (exchange, symbol)
);

CREATE TABLE snapshots (
    series      INTEGER NOT NULL REFERENCES series (id),
    ts          INTEGER NOT NULL,
    exchange_ts INTEGER,
    received_ts INTEGER NOT NULL,
    capture     TEXT    NOT NULL,
    bid_levels  INTEGER NOT NULL,
    ask_levels  INTEGER NOT NULL,
    best_bid    REAL,
    best_ask    REAL,
    mid         REAL,
    spread_bps  REAL,
    bid_size_10 REAL,
    ask_size_10 REAL,
    imbalance_10 REAL,
    crossed     INTEGER NOT NULL,
    codec       INTEGER NOT NULL,
    book        BLOB    NOT NULL,
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;

CREATE TABLE gaps (
    series   INTEGER NOT NULL REFERENCES series (id),
    start_ts INTEGER NOT NULL,
    end_ts   INTEGER NOT NULL,
    reason   TEXT    NOT NULL,
    PRIMARY KEY (series, start_ts)
) WITHOUT ROWID;

CREATE TABLE dicts (
    id    INTEGER PRIMARY KEY,
    codec INTEGER NOT NULL,
    data  BLOB    NOT NULL
);
"""

# OAuth clients (obd client add): the secret is kept only as a salted scrypt hash.
_V2 = """
CREATE TABLE clients (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    secret_hash TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,
    created_ts  INTEGER NOT NULL
) WITHOUT ROWID;
"""

# The exchange's own update id or sequence number of each stored book (ccxt's `nonce`),
# so users can check a series for exchange-side gaps; NULL where the source has none.
_V3 = """
ALTER TABLE snapshots ADD COLUMN seq INTEGER;
"""

# A series registered by `obd backfill` for history only: never collected live (its
# exchange may be one obd cannot reach); `obd coins add` turns it into a collected one.
# (Named _V5: it follows the storage work's _V4 when both are merged; here it is 4th.)
_V5 = """
ALTER TABLE series ADD COLUMN history_only INTEGER NOT NULL DEFAULT 0;
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V5)  # MIGRATIONS[i] takes user_version i to i + 1
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: apsw.Connection, now_ms: int) -> None:
    """Bring the file to SCHEMA_VERSION; refuse files from a newer obd or other programs."""
    version = known_version(conn)
    if version == 0 and _has_foreign_tables(conn):
        raise StoreError("the database file holds tables that are not obd's; refusing to use it")
    for step in range(version, SCHEMA_VERSION):
        with conn:
            conn.execute(MIGRATIONS[step])
            conn.execute(f"PRAGMA user_version = {step + 1}")
            _write_meta(conn, now_ms, created=step == 0)


def known_version(conn: apsw.Connection) -> int:
    """The file's schema version (0: empty or not obd's); StoreError if a newer obd wrote
    it, whose tables this obd would misread. Every opener of a file asks this."""
    row = conn.execute("PRAGMA user_version").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"database {conn.filename}: schema {version} is newer than this obd understands "
            f"({SCHEMA_VERSION}); upgrade obd"
        )
    return version


def is_obd_file(conn: apsw.Connection) -> bool:
    """The file names itself an obd file (its meta table); call `known_version` first."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    except apsw.SQLError:
        return False
    return row is not None and row[0] == FORMAT_NAME


def _has_foreign_tables(conn: apsw.Connection) -> bool:
    rows = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").fetchone()
    return bool(rows and rows[0])


def _write_meta(conn: apsw.Connection, now_ms: int, *, created: bool) -> None:
    values = {
        "format": FORMAT_NAME,
        "schema_version": str(SCHEMA_VERSION),
        "written_by": f"obd {__version__}",
        "format_doc": "docs/FORMAT.md in the obd repository",
    }
    if created:
        values["created_ts"] = str(now_ms)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        list(values.items()),
    )
