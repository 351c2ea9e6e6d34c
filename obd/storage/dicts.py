"""Per-series size models in the `dicts` table (codec 2, docs/FORMAT.md): which model a
writer encodes a series' books with, when it learns a new one, and the lookup readers
decode with.

A model is a static Huffman code for the size symbols of one series' books: trained on a
few of its books, it saves the ~30 bytes a book that a per-book zstd table costs. A
writing connection stores a series' first TRAIN_BOOKS books without one (codec 1) while it
counts their size symbols, then trains a model and stores it as a `dicts` row in the same
transaction. It learns a new one when the model is a day older, by slot time, than the
book being written, or when too many books came out smaller without it: sizes drift with
the price. The codec still picks the smallest encoding per book, so a stale model costs
bytes, never a book. Models are rows that are never updated or deleted, so readers cache
them by id for a connection's life.
"""

import contextlib
import weakref
from collections.abc import Callable

import apsw
import numpy as np
import numpy.typing as npt

from obd.storage import codec, sizecode
from obd.storage.sizecode import SizeModel

__all__ = ["TRAIN_BOOKS", "Models", "resolver", "writing"]

TRAIN_BOOKS = 16  # 8 already code later books within ~1 B of 100 (benchmarks/compare_codec.py)
RETRAIN_AFTER_MS = 86_400_000
WINDOW = 64  # books over which the codec's choices are counted
FALLBACK_LIMIT = 16  # of them stored without the model: learn a new one

_CODEC = codec.MODELED
_LATEST = "SELECT id, data, ts FROM dicts WHERE series = ? AND codec = ? ORDER BY id DESC LIMIT 1"
_BY_ID = "SELECT data FROM dicts WHERE id = ? AND codec = ?"


class _Series:
    """One series' model and learning on a writing connection."""

    __slots__ = ("counts", "fallbacks", "fresh", "learned", "model", "seen", "trained_ts")

    def __init__(self, model: SizeModel | None = None, trained_ts: int = 0) -> None:
        self.model, self.trained_ts = model, trained_ts
        # Made by this connection and not known committed: checked in the file before
        # each use, since a rolled-back transaction takes the row away.
        self.fresh = False
        self.counts: npt.NDArray[np.int64] | None = None if model else _zeros()
        self.learned = self.seen = self.fallbacks = 0


class Models:
    """The size models of one writing connection, a series at a time; used from the
    writer's thread only."""

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn
        self._series: dict[int, _Series] = {}

    def model_for(self, series: int, ts: int) -> SizeModel | None:
        """The model to encode the series' book at slot `ts` with, if it has one."""
        state = self._state(series)
        if state.model is not None and state.fresh and not self._exists(state.model.id):
            state = self._series[series] = _Series()  # its transaction was rolled back
        if state.counts is None and ts >= state.trained_ts + RETRAIN_AFTER_MS:
            state.counts = _zeros()
        return state.model

    def committed(self) -> None:
        """The connection's transaction committed: the models it made are in the file."""
        for state in self._series.values():
            state.fresh = False

    def stored(self, series: int, ts: int, codec_id: int, blob: bytes) -> None:
        """Count a book just written for the series; train a model when it has enough."""
        state = self._state(series)
        if state.model is not None:
            state.seen += 1
            state.fallbacks += codec_id != _CODEC
            if state.seen == WINDOW:
                if state.fallbacks >= FALLBACK_LIMIT and state.counts is None:
                    state.counts = _zeros()
                state.seen = state.fallbacks = 0
        if state.counts is None:
            return
        symbols = codec.size_symbols(codec_id, blob, self._lookup(state))
        if symbols is None:  # a RAW book: nothing to learn from
            return
        state.counts += sizecode.count(symbols)
        state.learned += 1
        if state.learned >= TRAIN_BOOKS:
            self._train(series, state.counts, ts)

    def _train(self, series: int, counts: npt.NDArray[np.int64], ts: int) -> None:
        lengths = sizecode.train(counts)
        self._conn.execute(
            "INSERT INTO dicts (codec, data, series, ts) VALUES (?, ?, ?, ?)",
            (_CODEC, lengths, series, ts),
        )
        model = SizeModel(self._conn.last_insert_rowid(), lengths)
        state = self._series[series] = _Series(model, ts)
        state.fresh = True

    def _state(self, series: int) -> _Series:
        state = self._series.get(series)
        if state is None:
            row = self._conn.execute(_LATEST, (series, _CODEC)).fetchone()
            state = _Series()
            if row is not None:  # a damaged row: learn a new model rather than stop writing
                with contextlib.suppress(KeyError):
                    state = _Series(_model(row[0], row[1]), row[2] or 0)
            self._series[series] = state
        return state

    def _exists(self, model_id: int) -> bool:
        return self._conn.execute(_BY_ID, (model_id, _CODEC)).fetchone() is not None

    @staticmethod
    def _lookup(state: _Series) -> Callable[[int], SizeModel]:
        def find(model_id: int) -> SizeModel:
            if state.model is None or state.model.id != model_id:
                raise KeyError(model_id)
            return state.model

        return find


_WRITING: "weakref.WeakKeyDictionary[apsw.Connection, Models]" = weakref.WeakKeyDictionary()
_READING: "weakref.WeakKeyDictionary[apsw.Connection, dict[int, SizeModel]]" = (
    weakref.WeakKeyDictionary()
)


def writing(conn: apsw.Connection) -> Models:
    """The models a writing connection encodes with (one set per connection)."""
    models = _WRITING.get(conn)
    if models is None:
        models = _WRITING[conn] = Models(conn)
    return models


def resolver(conn: apsw.Connection) -> Callable[[int], SizeModel]:
    """Model id -> model, read from the connection's file once and kept; KeyError for an
    id the file does not hold (`codec.decode_many` reports the book corrupt)."""
    cache = _READING.get(conn)
    if cache is None:
        cache = _READING[conn] = {}

    def find(model_id: int) -> SizeModel:
        model = cache.get(model_id)
        if model is None:
            row = conn.execute(_BY_ID, (model_id, _CODEC)).fetchone()
            if row is None:
                raise KeyError(model_id)
            model = cache[model_id] = _model(model_id, row[0])
        return model

    return find


def _model(model_id: int, data: bytes) -> SizeModel:
    """The row's model; a row that is not a valid code makes its books corrupt (KeyError
    is what `codec.decode_many` reports them by)."""
    try:
        return SizeModel.load(model_id, data)
    except ValueError as exc:
        raise KeyError(f"{exc}") from None


def _zeros() -> npt.NDArray[np.int64]:
    return np.zeros(sizecode.SYMBOLS, np.int64)
