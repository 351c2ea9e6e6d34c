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
# 16 KiB pages: range scans ran ~2x faster than at 4 KiB; a page holds ~30 rows of
# 100-level books, or (schema 4, `books`) three 4-6 KB books of depth 1000; longer books
# fill whole overflow pages (bench_growth.py's layout section measures it).
PAGE_SIZE = 16_384

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

# A book's key in `books`: series * 2^42 + ts. ts (ms) stays below 2^42 until 2109, so
# keys of different series never meet, and one series' books sit together in key order.
BOOK_KEY_SHIFT = 42
TS_LIMIT = 1 << BOOK_KEY_SHIFT  # a snapshot's ts is in [0, TS_LIMIT)
_KEY = "* 4398046511104 +"  # "* 2^42 +", spelled out for SQLite
# Blobs up to this many bytes stay in their snapshot_rows row; longer ones go to `books`.
# A WITHOUT ROWID row keeps ~4 KB inline (at 16 KiB pages) and puts the rest of a longer
# one in an overflow page of its own, mostly empty; at 2 KB a row always fits.
INLINE_BOOK_BYTES = 2_048


def book_key(series: int, ts: int) -> int:
    """The `books.id` of a snapshot: series * 2^42 + ts."""
    return (series << BOOK_KEY_SHIFT) + ts


def snapshots_view(*added: str) -> str:
    """The `snapshots` view over snapshot_rows and books, with the schema-3 columns and
    then `added` (columns a later migration adds to snapshot_rows). Such a migration
    runs `ALTER TABLE snapshot_rows ADD COLUMN x ...; DROP VIEW snapshots;` and this
    with ("x",): `snapshots` is a view since schema 4, so ALTER TABLE cannot reach it."""
    extra = "".join(f", r.{name}" for name in added)
    return f"""CREATE VIEW snapshots AS
SELECT r.series, r.ts, r.exchange_ts, r.received_ts, r.capture, r.bid_levels,
    r.ask_levels, r.best_bid, r.best_ask, r.mid, r.spread_bps, r.bid_size_10,
    r.ask_size_10, r.imbalance_10, r.crossed, r.codec,
    CASE WHEN length(r.book) > 0 THEN r.book
        ELSE (SELECT b.book FROM books AS b WHERE b.id = r.series {_KEY} r.ts) END AS book,
    r.seq{extra}
FROM snapshot_rows AS r;"""


# Schema 4 (issues 14 and 17):
# - A series is (exchange, symbol, interval): re-adding a coin at another interval starts
#   a new series and the old one stays readable; at most one active series per coin.
# - Each series keeps its snapshot count and first and last ts, maintained by triggers
#   in the transaction that writes the rows, so listing coins never scans rows.
# - Blobs over INLINE_BOOK_BYTES (deep books) move to `books`, a rowid table keyed
#   series * 2^42 + ts, which fills whole pages with books of any size; their row keeps
#   an empty `book`. Small books stay inline: one B-tree write a row, as before.
#   The old table is renamed, not copied: upgrading a file moves only its long blobs.
#   The view `snapshots` keeps the schema-3 columns, blob included, for every reader.
_V4 = f"""
CREATE TABLE series_v4 (
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
    snapshots   INTEGER NOT NULL DEFAULT 0,
    first_ts    INTEGER,
    last_ts     INTEGER,
    UNIQUE (exchange, symbol, interval_ms)
);
INSERT INTO series_v4 (id, exchange, symbol, interval_ms, interval, depth, active,
    synthetic, added_ts, tick_size, lot_size)
SELECT id, exchange, symbol, interval_ms, interval, depth, active, synthetic, added_ts,
    tick_size, lot_size FROM series;
DROP TABLE series;
ALTER TABLE series_v4 RENAME TO series;
CREATE UNIQUE INDEX series_active ON series (exchange, symbol) WHERE active = 1;

ALTER TABLE snapshots RENAME TO snapshot_rows;

CREATE TABLE books (
    id   INTEGER PRIMARY KEY,  -- snapshot_rows.series * 2^42 + snapshot_rows.ts
    book BLOB    NOT NULL
);
INSERT INTO books (id, book)
SELECT series {_KEY} ts, book FROM snapshot_rows WHERE length(book) > {INLINE_BOOK_BYTES}
ORDER BY series, ts;
UPDATE snapshot_rows SET book = x'' WHERE length(book) > {INLINE_BOOK_BYTES};

UPDATE series SET
    snapshots = (SELECT count(*) FROM snapshot_rows WHERE series = series.id),
    first_ts = (SELECT min(ts) FROM snapshot_rows WHERE series = series.id),
    last_ts = (SELECT max(ts) FROM snapshot_rows WHERE series = series.id);

{snapshots_view()}

CREATE TRIGGER snapshot_added AFTER INSERT ON snapshot_rows BEGIN
    UPDATE series SET
        snapshots = snapshots + 1,
        first_ts = CASE WHEN first_ts IS NULL OR NEW.ts < first_ts THEN NEW.ts
                        ELSE first_ts END,
        last_ts = CASE WHEN last_ts IS NULL OR NEW.ts > last_ts THEN NEW.ts
                       ELSE last_ts END
    WHERE id = NEW.series;
END;

CREATE TRIGGER snapshot_deleted AFTER DELETE ON snapshot_rows BEGIN
    UPDATE series SET
        snapshots = snapshots - 1,
        first_ts = CASE WHEN OLD.ts = first_ts
            THEN (SELECT min(ts) FROM snapshot_rows WHERE series = OLD.series)
            ELSE first_ts END,
        last_ts = CASE WHEN OLD.ts = last_ts
            THEN (SELECT max(ts) FROM snapshot_rows WHERE series = OLD.series)
            ELSE last_ts END
    WHERE id = OLD.series;
END;

CREATE TRIGGER snapshot_book_deleted AFTER DELETE ON snapshot_rows
WHEN length(OLD.book) = 0 BEGIN
    DELETE FROM books WHERE id = OLD.series {_KEY} OLD.ts;
END;

-- A row and its book are found by (series, ts): rows are written, never moved.
CREATE TRIGGER snapshot_key_fixed BEFORE UPDATE OF series, ts ON snapshot_rows BEGIN
    SELECT RAISE(ABORT, 'snapshot_rows: series and ts are never updated');
END;
"""

# A series registered by `obd backfill` for history only: never collected live (its
# exchange may be one obd cannot reach); `obd coins add` turns it into a collected one.
_V5 = """
ALTER TABLE series ADD COLUMN history_only INTEGER NOT NULL DEFAULT 0;
"""

# Per-series size models (codec 2) in `dicts`: the series a model belongs to and the
# slot of the last book it learned from, so a writer finds a series' latest model by index.
_V6 = """
ALTER TABLE dicts ADD COLUMN series INTEGER REFERENCES series (id);
ALTER TABLE dicts ADD COLUMN ts INTEGER;
CREATE INDEX dicts_series ON dicts (series, id);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5, _V6)  # [i] takes user_version i to i + 1
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
