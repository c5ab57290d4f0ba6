"""A template's values as CloudFormation computes them before an update runs.

Rules of this file:
- Pure: a parsed template, parameter values and pseudo parameters in; values out. No moto,
  no clock, so a change set's diff can be tested as a function.
- A value that only the update itself can tell (a `Ref` to a resource, `Fn::GetAtt`,
  `${Res}` or `${Res.Attr}` in `Fn::Sub`) becomes a placeholder that names it: equal on
  both sides of a comparison, and recorded, so the caller decides whether the referenced
  resource's own change carries over (a `Ref` moves with a replacement, an attribute may
  move with any modification).
- Every parameter an evaluation reads is recorded, through the conditions it consults too:
  that is how a change names the parameter that caused it (`CausingEntity`).
- `AWS::NoValue` removes the key or list item it stands for.
- A template CloudFormation would refuse raises `TemplateError` with AWS's wording where it
  is known.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()
_SUB_RE = re.compile(r"\$\{([^}]*)\}")
_LIST_TYPES = ("CommaDelimitedList", "List<")


class TemplateError(Exception):
    """A template CloudFormation refuses (its ValidationError)."""


@dataclasses.dataclass(frozen=True)
class Reference:
    """A value only the update can tell: a resource's physical id, or one of its attributes."""

    logical_id: str
    attribute: str | None = None  # None: `Ref`, the physical id

    @property
    def entity(self) -> str:
        """As a change set's CausingEntity names it: `Res` or `Res.Attr`."""
        return self.logical_id if self.attribute is None else f"{self.logical_id}.{self.attribute}"

    @property
    def placeholder(self) -> str:
        return f"{{{{{self.entity}}}}}"


@dataclasses.dataclass(frozen=True)
class Reads:
    """What one evaluation read: parameter names and resource references."""

    parameters: frozenset[str] = frozenset()
    references: frozenset[Reference] = frozenset()


class _Reading:
    def __init__(self) -> None:
        self.parameters: set[str] = set()
        self.references: set[Reference] = set()

    def add(self, reads: Reads) -> None:
        self.parameters |= reads.parameters
        self.references |= reads.references

    def frozen(self) -> Reads:
        return Reads(frozenset(self.parameters), frozenset(self.references))


class Evaluation:
    """One template read with one set of parameter values."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        pseudo: Mapping[str, Any],
        zones: Sequence[str],
    ) -> None:
        self.resources: Mapping[str, Any] = _section(template, "Resources")
        self.parameters: Mapping[str, str] = dict(parameters)  # as given: text
        self._declared = _section(template, "Parameters")
        self._conditions = _section(template, "Conditions")
        self._mappings = _section(template, "Mappings")
        self._values = {
            key: _typed(value, self._declared.get(key)) for key, value in parameters.items()
        }
        self._pseudo = pseudo
        self._region = str(pseudo.get("AWS::Region", ""))
        self._zones = list(zones)
        self._decided: dict[str, tuple[bool, Reads]] = {}
        self._deciding: set[str] = set()

    # --- what callers ask ---------------------------------------------------------------

    def value(self, expression: Any) -> tuple[Any, Reads]:
        """The expression's value (NO_VALUE when it stands for none) and what it read."""
        reading = _Reading()
        return self._eval(expression, reading), reading.frozen()

    def exists(self, logical_id: str) -> bool:
        """Whether the resource is in the stack: its Condition, if any, holds."""
        condition = _mapping(self.resources.get(logical_id)).get("Condition")
        return condition is None or self.condition(str(condition))[0]

    def condition(self, name: str) -> tuple[bool, Reads]:
        """A named condition's truth, computed once, and the parameters behind it."""
        if name not in self._decided:
            if name not in self._conditions:
                raise TemplateError(
                    f"Template format error: Unresolved dependencies [{name}]. Cannot reference "
                    "resources in the Conditions block of the template"
                )
            if name in self._deciding:
                raise TemplateError(f"Template format error: Circular condition [{name}]")
            self._deciding.add(name)
            reading = _Reading()
            truth = self._truth(self._conditions[name], reading)
            self._deciding.discard(name)
            self._decided[name] = (truth, reading.frozen())
        return self._decided[name]

    # --- evaluation ---------------------------------------------------------------------

    def _eval(self, expression: Any, reading: _Reading) -> Any:
        if isinstance(expression, list):
            items = (self._eval(item, reading) for item in expression)
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(expression, dict):
            return expression
        if len(expression) == 1:
            (key, argument), *_ = expression.items()
            if key == "Ref":
                return self._ref(str(argument), reading)
            if isinstance(key, str) and key.startswith("Fn::"):
                return self._function(key, argument, reading)
        values = ((k, self._eval(v, reading)) for k, v in expression.items())
        return {k: v for k, v in values if v is not NO_VALUE}

    def _function(self, name: str, argument: Any, reading: _Reading) -> Any:
        handler = _FUNCTIONS.get(name)
        if handler is not None:
            return handler(self, argument, reading)
        # One we do not evaluate (Fn::Cidr, a transform...): its evaluated arguments stand for
        # it, so a parameter read inside still shows as a change.
        return {name: self._eval(argument, reading)}

    def _ref(self, name: str, reading: _Reading) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._declared:
            if name not in self._values:
                raise TemplateError(f"Parameters: [{name}] must have values")
            reading.parameters.add(name)
            return self._values[name]
        if name in self.resources:
            return self._reference(Reference(name), reading)
        raise TemplateError(
            f"Template format error: Unresolved resource dependencies [{name}] in the "
            "Resources block of the template"
        )

    def _reference(self, reference: Reference, reading: _Reading) -> str:
        if reference.logical_id not in self.resources:
            raise TemplateError(
                f"Template error: instance of Fn::GetAtt references undefined resource "
                f"{reference.logical_id}"
            )
        reading.references.add(reference)
        return reference.placeholder

    def _truth(self, expression: Any, reading: _Reading) -> bool:
        if not isinstance(expression, dict) or len(expression) != 1:
            raise TemplateError(f"Template error: {expression!r} is not a condition")
        (key, argument), *_ = expression.items()
        if key == "Condition":
            truth, reads = self.condition(str(argument))
            reading.add(reads)
            return truth
        if key == "Fn::Equals":
            left, right = _arguments(key, argument, 2)
            same: bool = canonical(self._eval(left, reading)) == canonical(
                self._eval(right, reading)
            )
            return same
        if key == "Fn::Not":
            (inner,) = _arguments(key, argument, 1)
            return not self._truth(inner, reading)
        if key in ("Fn::And", "Fn::Or"):
            truths = [self._truth(item, reading) for item in _listed(key, argument)]
            return all(truths) if key == "Fn::And" else any(truths)
        raise TemplateError(f"Template error: {key} is not a condition function")

    # --- the functions ------------------------------------------------------------------

    def _if(self, argument: Any, reading: _Reading) -> Any:
        name, when_true, when_false = _arguments("Fn::If", argument, 3)
        truth, reads = self.condition(str(name))
        reading.add(reads)
        return self._eval(when_true if truth else when_false, reading)

    def _get_att(self, argument: Any, reading: _Reading) -> str:
        if isinstance(argument, str):
            logical, _, attribute = argument.partition(".")
        else:
            logical, attribute = _arguments("Fn::GetAtt", argument, 2)
            attribute = self._eval(attribute, reading)
        return self._reference(Reference(str(logical), str(attribute)), reading)

    def _sub(self, argument: Any, reading: _Reading) -> str:
        if isinstance(argument, list):
            text, variables = _arguments("Fn::Sub", argument, 2)
            names = {k: self._eval(v, reading) for k, v in _mapping(variables).items()}
        else:
            text, names = argument, {}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} is the text ${Literal}
                return "${" + name[1:] + "}"
            name = name.strip()
            if name in names:
                return text_of(names[name])
            logical, dot, attribute = name.partition(".")
            if dot and logical in self.resources:
                return self._reference(Reference(logical, attribute), reading)
            return text_of(self._ref(name, reading))

        return _SUB_RE.sub(one, str(text))

    def _join(self, argument: Any, reading: _Reading) -> str:
        delimiter, items = _arguments("Fn::Join", argument, 2)
        values = self._eval(items, reading)
        if not isinstance(values, list):
            raise TemplateError("Template error: every Fn::Join object requires a list of values")
        return str(delimiter).join(text_of(v) for v in values)

    def _select(self, argument: Any, reading: _Reading) -> Any:
        index, items = _arguments("Fn::Select", argument, 2)
        position, values = int(text_of(self._eval(index, reading))), self._eval(items, reading)
        if not isinstance(values, list) or not 0 <= position < len(values):
            raise TemplateError(
                f"Template error: Fn::Select cannot select nonexistent value at index {position}"
            )
        return values[position]

    def _split(self, argument: Any, reading: _Reading) -> list[str]:
        delimiter, source = _arguments("Fn::Split", argument, 2)
        return text_of(self._eval(source, reading)).split(str(delimiter))

    def _base64(self, argument: Any, reading: _Reading) -> str:
        text = text_of(self._eval(argument, reading))
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    def _get_azs(self, argument: Any, reading: _Reading) -> list[str]:
        region = text_of(self._eval(argument, reading))
        if region in ("", self._region):
            return list(self._zones)
        return [f"{region}{letter}" for letter in "abc"]

    def _find_in_map(self, argument: Any, reading: _Reading) -> Any:
        keys = [text_of(self._eval(a, reading)) for a in _arguments("Fn::FindInMap", argument, 3)]
        value: Any = self._mappings
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                raise TemplateError(f"Template error: Unable to get mapping for {'::'.join(keys)}")
            value = value[key]
        return value

    def _import_value(self, argument: Any, reading: _Reading) -> str:
        # Another stack's export: known to CloudFormation, not to this evaluation; the name
        # stands for it, so only a change of name shows.
        return "{{ImportValue:" + text_of(self._eval(argument, reading)) + "}}"

    def _to_json_string(self, argument: Any, reading: _Reading) -> str:
        return json.dumps(self._eval(argument, reading), separators=(",", ":"))

    def _length(self, argument: Any, reading: _Reading) -> int:
        values = self._eval(argument, reading)
        if not isinstance(values, list):
            raise TemplateError("Template error: Fn::Length needs a list")
        return len(values)


_FUNCTIONS = {
    "Fn::If": Evaluation._if,
    "Fn::GetAtt": Evaluation._get_att,
    "Fn::Sub": Evaluation._sub,
    "Fn::Join": Evaluation._join,
    "Fn::Select": Evaluation._select,
    "Fn::Split": Evaluation._split,
    "Fn::Base64": Evaluation._base64,
    "Fn::GetAZs": Evaluation._get_azs,
    "Fn::FindInMap": Evaluation._find_in_map,
    "Fn::ImportValue": Evaluation._import_value,
    "Fn::ToJsonString": Evaluation._to_json_string,
    "Fn::Length": Evaluation._length,
}


def canonical(value: Any) -> Any:
    """A value as CloudFormation compares it: scalars as text ("1" and 1, "true" and True
    are the same property value once the template is read)."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if value is NO_VALUE or value is None:
        return value
    return text_of(value)


def text_of(value: Any) -> str:
    """A value where text is wanted (Fn::Sub, Fn::Join): lists joined with commas."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(text_of(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _typed(value: str, declaration: Any) -> Any:
    kind = str(_mapping(declaration).get("Type", "String"))
    return value.split(",") if kind.startswith(_LIST_TYPES) else value


def _section(template: Mapping[str, Any], name: str) -> dict[str, Any]:
    section = template.get(name)
    return dict(section) if isinstance(section, dict) else {}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _listed(name: str, argument: Any) -> list[Any]:
    if not isinstance(argument, list):
        raise TemplateError(f"Template error: {name} needs a list of arguments")
    return argument


def _arguments(name: str, argument: Any, count: int) -> list[Any]:
    listed = _listed(name, argument)
    if len(listed) != count:
        raise TemplateError(f"Template error: {name} needs {count} arguments, not {len(listed)}")
    return listed
