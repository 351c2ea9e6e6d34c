"""schemathesis hooks for tests/test_fuzz.py (loaded by `st run` through the
SCHEMATHESIS_HOOKS environment variable, in its own process).

The fuzzer is a client allowed to write, and removing a coin is a legitimate request;
the test watches one coin (`GUARD_EXCHANGE`) to prove the fuzzing costs collection
nothing, so the fuzzer may do anything but remove that one.
"""

from typing import Any

import schemathesis

GUARD_EXCHANGE = "guard"


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    if case.method.upper() != "DELETE":
        return True
    return (case.query or {}).get("exchange") != GUARD_EXCHANGE
