# The compiled core's interface: the same as obd/storage/scaled.py (its docstring).
from typing import Any, Literal

def books(
    prices: Any, sizes: Any, offsets: Any, n_bids: Any
) -> list[tuple[list[tuple[float, float]], list[tuple[float, float]]]]: ...
def check(header: tuple[Any, ...]) -> tuple[int, int]: ...
def decode(
    headers: list[tuple[Any, ...] | None],
    symbols: list[bytes | None],
    steps: list[bytes | None],
    tables: list[bytes | None],
    offsets: Any,
    prices: Any,
    sizes: Any,
) -> None: ...
def encode(
    source: Any, n_bids: int, n_asks: int, is_msgpack: bool, lengths: bytes | None = None
) -> (
    tuple[int, int, int, int, int, int, int, int, bytes, bytes, bytes]
    | tuple[int, int, int, int, int, int, int, int, bytes, bytes, bytes, bytes | None]
    | Literal[False]
    | None
): ...
def msgpack(prices: Any, sizes: Any, offsets: Any, n_bids: Any) -> list[tuple[bytes, bytes]]: ...
def size_symbols(header: tuple[Any, ...], table: bytes) -> bytes: ...
def size_table(lengths: bytes) -> bytes: ...
