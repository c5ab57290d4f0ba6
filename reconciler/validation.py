"""One-line messages from pydantic's validation errors, for the people who read them.

Rules of this file:
- A message names the field as the input spells it (`notify[0].url`, `updatedAt`) and says
  what is wanted; several faults are joined with "; " on the same line.
- It never quotes the value given (a sink's URL is a secret): only a validator's own
  message may, and the validators of this project quote only what is safe to show.
- A validator's message is written to follow the field's name: "must be http:// or https://",
  "'done' is not running, succeeded or failed".
"""

from __future__ import annotations

from collections.abc import Sequence

import pydantic
from pydantic_core import ErrorDetails

_WANTED = {
    "missing": "is missing",
    "missing_keyword_argument": "is missing",  # a pydantic dataclass's words for the same
    "extra_forbidden": "is not a known key",
    "unexpected_keyword_argument": "is not a known key",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "dataclass_type": "must be a mapping",
}


def one_line(exc: pydantic.ValidationError, where: Sequence[str | int] = ()) -> str:
    """Every fault of `exc`, each as "<field> <what is wanted>", on one line."""
    return "; ".join(_fault(err, where) for err in exc.errors(include_input=False))


def field_name(loc: Sequence[str | int]) -> str:
    """`("notify", 0, "url")` as `notify[0].url`."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def _fault(err: ErrorDetails, where: Sequence[str | int]) -> str:
    field = field_name([*where, *err["loc"]]) or "the body"
    if err["type"] in _WANTED:
        return f"{field} {_WANTED[err['type']]}"
    if err["type"] == "literal_error":  # "'json' or 'slack'": words, not Python literals
        return f"{field} must be {str(err.get('ctx', {}).get('expected', '')).replace(chr(39), '')}"
    if err["type"] == "value_error":  # our validators' messages follow the field's name
        return f"{field} {err['msg'].removeprefix('Value error, ')}"
    return f"{field}: {err['msg'][:1].lower()}{err['msg'][1:]}"  # pydantic's own wording
