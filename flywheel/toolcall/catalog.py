"""The function catalog of the `toolcall` domain: what a valid call looks like.

A catalog is a file of OpenAI-style function definitions (JSON or YAML): a list of tools,
each `{"type": "function", "function": {name, description, parameters}}` or the bare
function object, or an object `{"tools": [...], "skills": [...]}`. `parameters` is a JSON
Schema object. Its properties may be `string`, `number`, `integer`, `boolean`, `array`
(of any of these, of objects, of arrays) and `object` (with `properties` and `required`,
nested to any depth; without `properties`, any JSON object), an `enum` of values of the
property's own type, a `default`, and a `string` with `format: date` (the flywheel's
date values: "MM-DD", "today", "tomorrow", "+Nd", "next_<weekday>") or `format: time`
("HH:MM", 24-hour). Extensions the shipped catalog uses and a user's may: `x-words` on a
string enum (value -> the other words a request may say for it) or on a boolean (the words
that switch it on), and `x-family` on a function (the skill it is counted under; default:
its own name). What is refused (one line naming the function and argument) is listed in
`REFUSED`; docs/your-tools.md has the whole format.

`load` checks a file and raises a one-line `DataError` naming the function and field.
The built-in catalog is one such file, `tools.json` beside this module (`SHIPPED_FILE`);
the embedded request generator (phrasings.py) is written for it and loads it itself.
Everything else that reads a catalog (the verifier, the scorer, the students' prompts,
the skills) is handed the `Catalog` the domain loaded.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.store import DataError

# Argument types. `date` values are canonical strings: "MM-DD" for absolute dates,
# "today", "tomorrow", "+Nd" or "next_<weekday>" for relative ones.
STR, NUMBER, INT, ENUM, DATE, TIME, BOOL = "str", "number", "int", "enum", "date", "time", "bool"
ARRAY, OBJECT = "array", "object"
SCALARS = (STR, NUMBER, INT, ENUM, DATE, TIME, BOOL)

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# The skills of a catalog of your own besides one per function (family): those that make
# sense for any schema. `enums` only where some argument is an enum.
GENERIC_SKILLS = ("optional_args", "two_calls", "no_call", "enums")


@dataclass(frozen=True)
class Arg:
    """One argument (or an array's item, or an object's field). `enum` holds values of
    the JSON type `base`; `items` is an array's item schema; `fields` an object's
    properties (`free`: an object without `properties`, any JSON object)."""
    name: str
    type: str
    required: bool = True
    enum: tuple = ()
    description: str = ""
    base: str = "string"
    items: Arg | None = None
    fields: tuple[Arg, ...] = ()
    free: bool = False
    default: Any = None

    def field(self, name: str) -> Arg | None:
        return next((a for a in self.fields if a.name == name), None)


@dataclass(frozen=True)
class Function:
    name: str
    family: str
    args: tuple[Arg, ...] = field(default_factory=tuple)
    description: str = ""

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)


_JSON_TYPES = {STR: "string", NUMBER: "number", INT: "integer", DATE: "string", TIME: "string",
               BOOL: "boolean", ARRAY: "array", OBJECT: "object"}
_FROM_JSON = {"string": STR, "number": NUMBER, "integer": INT, "boolean": BOOL, "array": ARRAY, "object": OBJECT}
_FORMATS = {DATE: "MM-DD, or today, tomorrow, +Nd, next_<weekday>", TIME: "HH:MM, 24-hour"}
# OpenAI's rule for a function name; an argument name is any text without spaces or the
# characters the call text uses (`=`, `,`, brackets): BFCL's live data has non-ASCII ones.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAME_RULE = "1 to 64 letters, digits, _ or -"
_ARG_NAME = re.compile(r"[^\s=,;()\[\]{}\"']+")
_ARG_RULE = "no spaces, quotes, =, commas, semicolons or brackets"
# What `load` refuses, and why (docs/your-tools.md lists the same).
REFUSED = {  # key: (the construct, why)
    "combinator": ("anyOf/oneOf/allOf/not/$ref",
                   "one schema per argument: the scorer and the verifier need its one type"),
    "type_list": ("a list of types", "the same: one JSON type per argument"),
    "enum_container": ("enum on an array or object", "an enum lists scalar values"),
    "enum_type": ("an enum value not of the property's type",
                  "a value the schema's own type refuses cannot be a valid answer"),
    "no_items": ("an array without items", "the item type is what its values are checked and scored by"),
}
_COMBINATORS = ("anyOf", "oneOf", "allOf", "not", "$ref")


def _value_is(base: str, value: Any) -> bool:
    """Is `value` of the JSON type `base` (a boolean is not a number)."""
    if base == "string":
        return isinstance(value, str)
    if base == "boolean":
        return isinstance(value, bool)
    if base == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if base == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return False


def schema(arg: Arg) -> dict[str, Any]:
    """`arg` as the JSON Schema it was read from (descriptions with the date and time formats)."""
    out: dict[str, Any] = {"type": arg.base if arg.type == ENUM else _JSON_TYPES[arg.type]}
    if arg.enum:
        out["enum"] = list(arg.enum)
    text = " ".join(t for t in (arg.description, _FORMATS.get(arg.type, "")) if t)
    if text:
        out["description"] = text
    if arg.items is not None:
        out["items"] = schema(arg.items)
    if arg.type == OBJECT and not arg.free:
        out["properties"] = {f.name: schema(f) for f in arg.fields}
        out["required"] = [f.name for f in arg.fields if f.required]
    if arg.default is not None:
        out["default"] = arg.default
    return out


def _describe(arg: Arg) -> dict[str, Any]:
    out: dict[str, Any] = {"name": arg.name, "type": arg.type, "required": arg.required, "enum": list(arg.enum)}
    if arg.items is not None:
        out["items"] = _describe(arg.items)
    if arg.fields:
        out["fields"] = [_describe(f) for f in arg.fields]
    return out


@dataclass(frozen=True)
class Catalog:
    """The functions a request may call, the words a request may use for enum values and
    booleans, and the skills rows are counted in (families, then cross-cutting ones)."""
    functions: dict[str, Function]
    enum_words: dict[str, tuple[str, ...]]  # value -> words, the value itself first
    bool_words: dict[str, tuple[str, ...]]  # boolean argument -> words that switch it on
    phenomena: tuple[str, ...]  # the cross-cutting skills
    source: str = ""

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(sorted({f.family for f in self.functions.values()}))

    @property
    def skills(self) -> tuple[str, ...]:
        return self.families + self.phenomena

    def describe(self) -> list[dict]:
        """The catalog as plain data, for prompt templates."""
        return [{"name": f.name, "description": f.description, "args": [_describe(a) for a in f.args]}
                for f in self.functions.values()]

    def tools(self) -> list[dict]:
        """The catalog as OpenAI-style tools (JSON Schema), for a chat template's `tools`."""
        out = []
        for f in self.functions.values():
            fn: dict[str, Any] = {"name": f.name}
            if f.description:
                fn["description"] = f.description
            fn["parameters"] = {"type": "object", "properties": {a.name: schema(a) for a in f.args},
                                "required": [a.name for a in f.args if a.required]}
            out.append({"type": "function", "function": fn})
        return out

    def random_spec(self, rng, skill: str) -> tuple[list[str], list[str]]:
        """(functions, skills) of a plan row showing `skill`, for a catalog with no request
        generator of its own (the teacher model writes the request)."""
        names = list(self.functions)
        fits = {
            "optional_args": [n for n in names if any(not a.required for a in self.functions[n].args)],
            "enums": [n for n in names if any(a.type == ENUM for a in self.functions[n].args)],
        }
        if skill == "no_call":
            return [], [skill]
        if skill == "two_calls":
            return sorted(rng.sample(names, 2)) if len(names) > 1 else names, [skill]
        pool = fits.get(skill) or [n for n in names if self.functions[n].family == skill] or names
        return [rng.choice(pool)], [skill]

    def words_for(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            return self.enum_words.get(value, (value,))
        return ("true" if value else "false",) if isinstance(value, bool) else (str(value),)

    def switch_words(self, arg: str) -> tuple[str, ...]:
        return self.bool_words.get(arg, (arg.replace("_", " "),))


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: not found (domain.toolcall.tools)") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:  # noqa: BLE001 (any parser error is one line about the file)
        raise DataError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} "
                        f"({' '.join(str(exc).split())[:160]})") from None


def _arg(where: str, name: str, prop: Any, required: bool, enum_words: dict, bool_words: dict) -> Arg:
    if not isinstance(name, str) or not _ARG_NAME.fullmatch(name):
        raise DataError(f"{where}: argument name {name!r} is not a name ({_ARG_RULE})")
    where = f"{where}.{name}"
    if not isinstance(prop, dict):
        raise DataError(f"{where}: a property is a JSON Schema object, not {type(prop).__name__}")
    combinator = next((k for k in _COMBINATORS if k in prop), None)
    if combinator:
        raise DataError(f"{where}: {combinator} is not supported ({REFUSED['combinator'][1]})")
    kind = prop.get("type", "string" if "enum" in prop else None)  # JSON Schema: an enum needs no type
    if isinstance(kind, list):
        raise DataError(f"{where}: a list of types {kind} is not supported ({REFUSED['type_list'][1]})")
    if kind not in _FROM_JSON:
        raise DataError(f"{where}: unknown type {kind!r} (string, number, integer, boolean, array or object)")
    description = str(prop.get("description", ""))
    default = prop.get("default")
    words = prop.get("x-words")
    if "enum" in prop:
        values = prop["enum"]
        if kind in ("array", "object"):
            raise DataError(f"{where}: enum on an {kind} is not supported ({REFUSED['enum_container'][1]})")
        if not isinstance(values, list) or not values:
            raise DataError(f"{where}: enum is empty")
        wrong = [v for v in values if not _value_is(kind, v)]
        if wrong:
            raise DataError(f"{where}: enum value {wrong[0]!r} is not of type {kind} "
                            f"({REFUSED['enum_type'][1]})")
        if len({json.dumps(v) for v in values}) != len(values):
            raise DataError(f"{where}: enum values must be distinct")
        if words is not None and not (kind == "string" and isinstance(words, dict) and set(words) <= set(values)
                                      and all(isinstance(w, list) and all(isinstance(x, str) and x.strip() for x in w)
                                              for w in words.values())):
            raise DataError(f"{where}: x-words must map string enum values to lists of words")
        for v in values:
            if isinstance(v, str) and v.strip():
                extra = tuple((words or {}).get(v, ()))
                spaced = (v.replace("_", " "),) if "_" in v else ()
                enum_words[v] = tuple(dict.fromkeys(enum_words.get(v, (v,)) + spaced + extra))
        return Arg(name, ENUM, required, tuple(values), description, base=kind, default=default)
    if kind == "array":
        if not isinstance(prop.get("items"), dict):
            raise DataError(f"{where}: an array without items is not supported ({REFUSED['no_items'][1]})")
        items = _arg(where, "items", prop["items"], True, enum_words, bool_words)
        return Arg(name, ARRAY, required, (), description, base=kind, items=items, default=default)
    if kind == "object":
        props = prop.get("properties")
        if props is None:
            return Arg(name, OBJECT, required, (), description, base=kind, free=True, default=default)
        inner = prop.get("required", [])
        if not isinstance(props, dict) or not isinstance(inner, list) or not all(isinstance(r, str) for r in inner):
            raise DataError(f"{where}: properties must be an object and required a list of names")
        missing = next((r for r in inner if r not in props), None)
        if missing:
            raise DataError(f"{where}: required field {missing!r} is not in properties")
        fields = tuple(_arg(where, k, v, k in inner, enum_words, bool_words) for k, v in props.items())
        return Arg(name, OBJECT, required, (), description, base=kind, fields=fields, default=default)
    fmt = prop.get("format")
    if kind == "string" and fmt in ("date", "time"):
        return Arg(name, DATE if fmt == "date" else TIME, required, (), description, default=default)
    if kind == "boolean" and words is not None:
        if not (isinstance(words, list) and words and all(isinstance(w, str) and w.strip() for w in words)):
            raise DataError(f"{where}: x-words of a boolean is a list of words")
        bool_words[name] = tuple(words)
    return Arg(name, _FROM_JSON[kind], required, (), description, base=kind, default=default)


def _function(where: str, tool: Any, enum_words: dict, bool_words: dict) -> Function:
    if isinstance(tool, dict) and tool.get("type") == "function" and "function" in tool:
        tool = tool["function"]
    if not isinstance(tool, dict):
        raise DataError(f"{where}: a tool is an object with name and parameters")
    name = tool.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DataError(f"{where}: name {name!r} is not a function name ({_NAME_RULE})")
    where = f"{where.rsplit(':', 1)[0]}: {name}"
    params = tool.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        raise DataError(f"{where}: parameters must be a JSON Schema of type object")
    props = params.get("properties", {})
    required = params.get("required", [])
    if not isinstance(props, dict):
        raise DataError(f"{where}: parameters.properties must be an object")
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise DataError(f"{where}: parameters.required must be a list of argument names")
    for r in required:
        if r not in props:
            raise DataError(f"{where}: required argument {r!r} is not in properties")
    args = tuple(_arg(where, k, v, k in required, enum_words, bool_words) for k, v in props.items())
    family = tool.get("x-family", re.sub(r"\W", "_", name))
    if not isinstance(family, str) or not family.isidentifier():
        raise DataError(f"{where}: x-family {family!r} is not a skill name")
    return Function(name, family, args, str(tool.get("description", "")))


def load(path: Path | str) -> Catalog:
    """The catalog in `path`, checked; a `DataError` names the function and field at fault."""
    path = Path(path)
    return from_tools(_read(path), str(path))


def from_tools(doc: Any, path: str) -> Catalog:
    """A catalog from tools already read (a list of tools, or `{"tools", "skills"}`), errors
    naming `path` (a file, or where the tools came from: a log line, a BFCL question)."""
    phenomena = None
    if isinstance(doc, dict) and "tools" in doc:
        phenomena = doc.get("skills")
        if phenomena is not None and not (isinstance(phenomena, list) and all(
                isinstance(s, str) and s.isidentifier() for s in phenomena)):
            raise DataError(f"{path}: skills must be a list of skill names")
        doc = doc["tools"]
    if not isinstance(doc, list) or not doc:
        raise DataError(f"{path}: not a list of tools (OpenAI-style function definitions)")
    functions: dict[str, Function] = {}
    enum_words: dict[str, tuple[str, ...]] = {}
    bool_words: dict[str, tuple[str, ...]] = {}
    for i, tool in enumerate(doc, 1):
        fn = _function(f"{path}: tool {i}", tool, enum_words, bool_words)
        if fn.name in functions:
            raise DataError(f"{path}: {fn.name}: duplicate function name")
        functions[fn.name] = fn
    if phenomena is None:
        has_enum = any(a.type == ENUM for f in functions.values() for a in walk(f.args))
        phenomena = [s for s in GENERIC_SKILLS if s != "enums" or has_enum]
    clash = set(phenomena) & {f.family for f in functions.values()}
    if clash:
        raise DataError(f"{path}: {sorted(clash)[0]}: a function family has the name of a cross-cutting skill")
    return Catalog(functions, enum_words, bool_words, tuple(phenomena), str(path))


def walk(args: tuple[Arg, ...]):
    """Every argument, array item and object field, depth first."""
    for a in args:
        yield a
        yield from walk(((a.items,) if a.items is not None else ()) + a.fields)


def scalars(spec: Arg, value: Any):
    """(schema, value) of every scalar in an argument's value: the value itself, or each
    one inside its arrays and objects (a free object's have no schema and are left out)."""
    if spec.type == ARRAY and isinstance(value, list):
        for item in value:
            yield from scalars(spec.items, item)
    elif spec.type == OBJECT and isinstance(value, dict):
        for k, v in value.items():
            field = spec.field(k)
            if field is not None:
                yield from scalars(field, v)
    elif spec.type in SCALARS:
        yield spec, value


SHIPPED_FILE = Path(__file__).with_name("tools.json")


@functools.cache
def shipped() -> Catalog:
    """The built-in catalog (read once): the embedded request generator's, and the
    domain's when `domain.toolcall.tools` names none."""
    return load(SHIPPED_FILE)
