"""One-line messages from pydantic's validation errors, for the people who read them.

Rules of this file:
- A message names the field as the input spells it (`notify[0].url`, `updatedAt`) and says
  what is wanted; several faults are joined with "; " on the same line.
- It never quotes the value given (a sink's URL is a secret): only a validator's own
  message may, and the validators of this project quote only what is safe to show.
- Common faults read as a sentence (`url is missing`); any other is `<field>: <message>`,
  the message a validator's own (`status: 'done' is not running, succeeded or failed`).
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
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "dataclass_type": "must be a mapping",
}


def one_line(
    exc: pydantic.ValidationError, where: Sequence[str | int] = (), *, named: bool = True
) -> str:
    """Every fault of `exc` as "<field> <what is wanted>", on one line; `where` is put before
    each field's name. `named=False` leaves the names out, for a value given on its own
    (a flag), which the caller names."""
    faults = []
    for err in exc.errors(include_input=False):
        field = field_name([*where, *err["loc"]]) or "the body"
        sentence, wanted = _wanted(err)
        faults.append(
            wanted if not named else f"{field} {wanted}" if sentence else f"{field}: {wanted}"
        )
    return "; ".join(faults)


def field_name(loc: Sequence[str | int]) -> str:
    """`("notify", 0, "url")` as `notify[0].url`."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def _wanted(err: ErrorDetails) -> tuple[bool, str]:
    """What the field wants, and whether that reads as a sentence after the field's name."""
    if err["type"] in _WANTED:
        return True, _WANTED[err["type"]]
    if err["type"] == "literal_error":  # "'json' or 'slack'": words, not Python literals
        return False, "must be " + str(err.get("ctx", {}).get("expected", "")).replace("'", "")
    message = err["msg"].removeprefix("Value error, ")  # a validator's own message
    return False, message[:1].lower() + message[1:]
