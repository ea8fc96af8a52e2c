"""JSON Schema from Python type hints and Google-style docstrings.

Only the subset that tool signatures need: primitives, ``list``/``dict``,
``Optional``/unions, ``Literal``, :class:`enum.Enum`, ``TypedDict`` and
``Annotated[T, "description"]`` (or ``Annotated[T, McpHeader("Name")]``).
:func:`validate` checks arguments against exactly that subset; explicit user
schemas are passed through unvalidated (and untouched: every JSON Schema
2020-12 keyword in them reaches ``tools/list`` as written).
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, final, get_args, get_origin, get_type_hints

__all__ = ["McpHeader", "parse_docstring", "schema_for_type", "signature_schema", "validate"]

_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$"
)
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@final
@dataclass(frozen=True, slots=True)
class McpHeader:
    """Mirror a tool parameter into the ``Mcp-Param-{name}`` HTTP header (2026-07-28).

    Put it in the parameter's annotation: ``region: Annotated[str,
    McpHeader("Region")]``. The input schema then carries ``"x-mcp-header":
    "Region"``, clients send the value in ``Mcp-Param-Region`` too, and
    proxies can route on it without reading the body; the transport checks
    that the header matches the body. Only ``str``, ``int`` and ``bool``
    parameters may carry one, each name once per tool (case-insensitively):
    a tool breaking a rule is refused when it is registered.

    Args:
        name: The header's name after ``Mcp-Param-``: an HTTP token.
    """

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"McpHeader name must be a str, got {type(self.name).__name__}")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {argument: description})."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        match = _SECTION.match(line)
        if match:
            section = match.group(1)
            current = None
            continue
        if section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            arg = _ARG_LINE.match(line)
            if arg and line.startswith("    ") and not line.startswith("        "):
                current = arg.group(1).lstrip("*")
                args[current] = arg.group(2).strip()
            elif current is not None and line.strip():
                args[current] = f"{args[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), args


def _is_typeddict(tp: object) -> bool:
    return isinstance(tp, type) and typing.is_typeddict(tp)


def schema_for_type(tp: Any) -> dict[str, Any]:
    """The JSON Schema for one annotation."""
    if tp is Any or tp is inspect.Parameter.empty or tp is object:
        return {}
    if tp is None or tp is type(None):
        return {"type": "null"}
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *extras = get_args(tp)
        schema = schema_for_type(base)
        for extra in extras:
            if isinstance(extra, str):
                schema["description"] = extra
            elif isinstance(extra, McpHeader):
                schema["x-mcp-header"] = extra.name
            elif isinstance(extra, Mapping):
                schema.update(extra)
        return schema
    if origin is Literal:
        values = list(get_args(tp))
        schema = {"enum": values}
        kinds = {_JSON_TYPES.get(type(v)) for v in values}
        if len(kinds) == 1 and None not in kinds:
            schema["type"] = kinds.pop()
        return schema
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        nullable = len(members) != len(get_args(tp))
        if len(members) == 1:
            inner = schema_for_type(members[0])
            return {"anyOf": [inner, {"type": "null"}]} if nullable else inner
        options = [schema_for_type(m) for m in members]
        if nullable:
            options.append({"type": "null"})
        return {"anyOf": options}
    if origin in (list, Sequence, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        args = get_args(tp)
        schema = {"type": "array"}
        if args and not (origin is tuple and len(args) != 2):
            schema["items"] = schema_for_type(args[0])
        if origin in (set, frozenset):
            schema["uniqueItems"] = True
        return schema
    if origin in (dict, Mapping) or tp is dict:
        args = get_args(tp)
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = schema_for_type(args[1])
        return schema
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [member.value for member in tp]
        schema = {"enum": values}
        kinds = {_JSON_TYPES.get(type(v)) for v in values}
        if len(kinds) == 1 and None not in kinds:
            schema["type"] = kinds.pop()
        return schema
    if _is_typeddict(tp):
        hints = get_type_hints(tp, include_extras=True)
        required = sorted(getattr(tp, "__required_keys__", hints.keys()))
        return {
            "type": "object",
            "properties": {name: schema_for_type(hint) for name, hint in hints.items()},
            "required": required,
        }
    if isinstance(tp, type):
        for py_type, json_type in _JSON_TYPES.items():
            if issubclass(tp, py_type) and not (py_type is int and issubclass(tp, bool)):
                if tp is bool:
                    return {"type": "boolean"}
                return {"type": json_type}
    raise TypeError(f"cannot derive a JSON Schema for {tp!r}; pass an explicit schema")


def signature_schema(
    fn: Any, *, skip: frozenset[str], arg_docs: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """Input schema for a function's parameters (those not in *skip*).

    Returns:
        ``(schema, parameter_names)``.
    """
    hints = get_type_hints(fn, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    names: list[str] = []
    open_ended = False
    for param in inspect.signature(fn).parameters.values():
        if param.name in skip:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            open_ended = open_ended or param.kind is param.VAR_KEYWORD
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{fn.__qualname__}: positional-only parameters cannot be arguments")
        schema = schema_for_type(hints.get(param.name, Any))
        if param.name in arg_docs and "description" not in schema:
            schema["description"] = arg_docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        elif param.default is None or isinstance(param.default, (str, int, float, bool)):
            schema.setdefault("default", param.default)
        properties[param.name] = schema
        names.append(param.name)
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    if not open_ended:
        out["additionalProperties"] = False
    return out, names


def _type_ok(value: object, json_type: str) -> bool:
    match json_type:
        case "string":
            return isinstance(value, str)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
        case "null":
            return value is None
        case "array":
            return isinstance(value, list)
        case "object":
            return isinstance(value, dict)
    return True


def validate(value: object, schema: Mapping[str, Any], path: str = "") -> str | None:
    """Check *value* against a schema of the subset we derive.

    Returns:
        ``None`` when valid, else a message naming the first problem.
    """
    where = path or "value"
    if "anyOf" in schema:
        if any(validate(value, option, path) is None for option in schema["anyOf"]):
            return None
        return f"{where}: does not match any allowed type"
    json_type = schema.get("type")
    if isinstance(json_type, str) and not _type_ok(value, json_type):
        return f"{where}: expected {json_type}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: must be one of {schema['enum']!r}"
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problem = validate(item, schema["items"], f"{where}[{index}]")
            if problem:
                return problem
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                return f"{path + '.' if path else ''}{name}: required argument missing"
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            if key in properties:
                problem = validate(item, properties[key], sub)
            elif isinstance(extra, Mapping):
                problem = validate(item, extra, sub)
            elif extra is False:
                problem = f"{sub}: unexpected argument"
            else:
                problem = None
            if problem:
                return problem
    return None
