"""JSON request bodies parsed without letting hostile input escape as a 500.

``json.loads`` raises more than ``JSONDecodeError`` on hostile bodies: ``RecursionError`` for
``[[[[...]]]]`` a few thousand levels deep, ``ValueError`` for an integer of more than 4,300
digits, ``UnicodeDecodeError`` for bytes that are not UTF-8. All of them are the client's
fault and answer 400 (``BadInput``) here, with a message saying which.

Nesting deeper than the interpreter's recursion limit (about 1,000 levels) is refused by the
parser itself; what the routes accept is much shallower anyway (a tensor's ``data`` at most
``MAX_ARRAY_DEPTH`` levels, numpy's own limit).
"""

from __future__ import annotations

import json
from typing import Any

from service.errors import BadInput

try:  # the serve extra has it (several times faster); without it loads_fast is loads
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

MAX_ARRAY_DEPTH = 64  # numpy's maximum number of dimensions


def loads(body: bytes | str, what: str = "request body", hint: str = "") -> Any:
    """Parse ``body`` as JSON, or raise ``BadInput`` naming ``what`` and the problem."""
    try:
        return json.loads(body)
    except RecursionError:
        raise BadInput(
            f"{what} is nested too deeply: JSON arrays and objects may be nested at most a few "
            f"hundred levels (tensors at most {MAX_ARRAY_DEPTH})"
        ) from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{what} is not valid JSON: not UTF-8 ({exc.reason}){hint}") from None
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python's digit limit
        raise BadInput(f"{what} is not valid JSON: {exc}{hint}") from None


FAST_MAX_BYTES = 64 * 1024


def loads_fast(body: bytes, what: str = "request body", hint: str = "") -> tuple[Any, bool]:
    """``(value, exact)``: ``body`` parsed by orjson when it takes it, else by ``loads`` (so
    every refusal, and its message, is the stdlib's). ``exact`` is False for orjson's result:
    it is the stdlib's for every document orjson accepts except integers beyond 64 bits,
    which orjson returns as (rounded) floats; a caller that needs such an integer exactly
    parses again with ``loads``.

    Only bodies up to ``FAST_MAX_BYTES`` (the small requests, parsed on the event loop) go to
    orjson. Larger ones, parsed in worker threads, go to the stdlib: with orjson the RSS grew
    by 46 MiB on each pass of the hostile-input catalogue (a 6 MB JSON body among them;
    tests/service/test_reliability_inputs.py), most likely its working memory left in the
    worker threads' malloc arenas; with the stdlib it stays flat."""
    if orjson is not None and len(body) <= FAST_MAX_BYTES:
        try:
            return orjson.loads(body), False
        except orjson.JSONDecodeError:
            pass  # NaN literals, 1e400, bad UTF-8, deep nesting, or not JSON: as the stdlib says
    return loads(body, what, hint), True
