"""Document fields as Milvus will store them: UTF-8 strings, and metadata as strict JSON, checked whole
at submission.

The workers hand the parsed object to pymilvus, which re-encodes it (orjson) into a Milvus JSON
field. Anything that step would refuse (a lone surrogate, an integer beyond 64 bits, nesting past
its recursion limit, more than Milvus' 65,536 bytes) or silently change (NaN and Infinity become
``null``; a repeated key keeps only its last value) is refused here, so an accepted job is never
failed, or quietly altered, by its metadata.
"""

from __future__ import annotations

import json
import math
from typing import Any

from embedfleet.errors import InvalidArgument, ResourceExhausted, echo

# Objects and arrays inside one another, the top object counting as 1 (orjson stops at 255).
MAX_METADATA_DEPTH = 32
# Milvus' limit on one JSON field value.
MILVUS_MAX_JSON_BYTES = 65536
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def utf8_size(value: str, what: str) -> int:
    """``value``'s size in UTF-8 bytes. A lone surrogate (which a JSON ``\\ud800`` escape or a Python
    string can carry, but UTF-8 cannot) is refused here rather than failing later at the Milvus write."""
    try:
        return len(value.encode())
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{what} is not valid UTF-8: a lone surrogate at character {exc.start}") from None


def check_metadata(metadata_json: str, what: str, max_bytes: int) -> dict[str, Any]:
    """The metadata object parsed; ``what`` ("document 3 'a' metadata") starts every error."""
    _check_size(utf8_size(metadata_json, what), what, max_bytes)
    try:
        parsed = json.loads(metadata_json, parse_constant=_refuse_constant(what), object_pairs_hook=_unique(what))
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise InvalidArgument(f"{what} is nested more than {MAX_METADATA_DEPTH} levels deep") from None
    except ValueError as exc:  # an integer literal longer than Python's int parsing limit
        raise InvalidArgument(f"{what} holds an integer beyond Milvus' 64-bit range ({exc})") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument(f"{what} must be a JSON object, got {type(parsed).__name__}")
    _check_values(parsed, what)
    # Milvus receives the object re-encoded compactly, which can be longer ("1e5" is sent as 100000.0).
    _check_size(len(json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode()), what, max_bytes)
    return parsed


def _check_size(size: int, what: str, max_bytes: int) -> None:
    if size > max_bytes:
        raise ResourceExhausted(f"{what} is {size} bytes; the limit is {max_bytes}: keep large data out of metadata")


def _refuse_constant(what: str) -> Any:
    def refuse(name: str) -> None:
        raise InvalidArgument(f"{what} holds {name}, which is not JSON (Milvus would store null): send a number")

    return refuse


def _unique(what: str) -> Any:
    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise InvalidArgument(f"{what} repeats the key {echo(key)}; only one value per key would be kept")
            obj[key] = value
        return obj

    return build


def _check_values(root: dict[str, Any], what: str) -> None:
    """Depth, strings, integers and floats of the whole tree, without recursion."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_METADATA_DEPTH:
                raise InvalidArgument(f"{what} is nested more than {MAX_METADATA_DEPTH} levels deep")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    utf8_size(key, f"{what}: a key")
                stack.append((item, depth + 1))
        elif isinstance(value, str):
            utf8_size(value, f"{what}: a string value")
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise InvalidArgument(f"{what} holds a {value.bit_length()}-bit integer, beyond Milvus' 64-bit range")
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgument(f"{what} holds a number too large for a double (Milvus would store null)")
