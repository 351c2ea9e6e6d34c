"""schemathesis hooks for tests/test_fuzz.py (loaded by `st run` through the
SCHEMATHESIS_HOOKS environment variable, in its own process).

The fuzzer is a client allowed to write, and removing a coin (or, with auth on, an
OAuth client) is a legitimate request; but the test watches one coin
(`GUARD_EXCHANGE`) to prove the fuzzing costs collection nothing, and fuzzes with the
token of one client (`FUZZ_CLIENT`): the fuzzer may do anything but remove those.
"""

import itertools
from typing import Any

import msgspec
import schemathesis

GUARD_EXCHANGE = "guard"
FUZZ_CLIENT = "fuzz"


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    if case.method.upper() != "DELETE":
        return True
    query = case.query or {}
    return query.get("exchange") != GUARD_EXCHANGE and query.get("name") != FUZZ_CLIENT


@schemathesis.deserializer("application/msgpack")
def msgpack_answer(context: Any, response: Any) -> Any:
    """obd answers msgpack on `Accept: application/msgpack`: validated like JSON."""
    return msgspec.msgpack.decode(response.content)


_asked = itertools.count()


@schemathesis.hook
def map_headers(context: Any, headers: dict[str, Any] | None) -> dict[str, Any] | None:
    """Every third case asks for msgpack: answers and errors in it, held to the same
    schemas."""
    if next(_asked) % 3:
        return headers
    return {**(headers or {}), "Accept": "application/msgpack"}
