"""The function catalog of the `toolcall` domain: what a valid call looks like.

A catalog is a file of OpenAI-style function definitions (JSON or YAML): a list of tools,
each `{"type": "function", "function": {name, description, parameters}}` or the bare
function object, or an object `{"tools": [...], "skills": [...]}`. `parameters` is a JSON
Schema object whose properties are `string`, `number`, `integer` or `boolean`, a string
`enum`, a `string` with `format: date` (the flywheel's date values: "MM-DD", "today",
"tomorrow", "+Nd", "next_<weekday>") or `format: time` ("HH:MM", 24-hour). Extensions the
shipped catalog uses and a user's may: `x-words` on an enum property (value -> the other
words a request may say for it) or on a boolean (the words that switch it on), and
`x-family` on a function (the skill it is counted under; default: its own name).
docs/your-tools.md has the whole format.

`load` checks a file and raises a one-line `DataError` naming the function and field.
The built-in catalog is one such file, `tools.json` beside this module (`SHIPPED`); the
embedded request generator (phrasings.py) is written for it, and the module constants
below (`FUNCTIONS`, `ENUM_WORDS`, ...) are its parts, for the generator. The verifier,
the scorer, the student's prompts and the skills read whichever `Catalog` the domain
loaded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.store import DataError

# Argument types. `date` values are canonical strings: "MM-DD" for absolute dates,
# "today", "tomorrow", "+Nd" or "next_<weekday>" for relative ones.
STR, NUMBER, INT, ENUM, DATE, TIME, BOOL = "str", "number", "int", "enum", "date", "time", "bool"

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# The skills of a catalog of your own besides one per function (family): those that make
# sense for any schema. `enums` only where some argument is an enum.
GENERIC_SKILLS = ("optional_args", "two_calls", "no_call", "enums")


@dataclass(frozen=True)
class Arg:
    name: str
    type: str
    required: bool = True
    enum: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Function:
    name: str
    family: str
    args: tuple[Arg, ...] = field(default_factory=tuple)
    description: str = ""

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)


_JSON_TYPES = {STR: "string", NUMBER: "number", INT: "integer", ENUM: "string", DATE: "string", TIME: "string",
               BOOL: "boolean"}
_FROM_JSON = {"string": STR, "number": NUMBER, "integer": INT, "boolean": BOOL}
_FORMATS = {DATE: "MM-DD, or today, tomorrow, +Nd, next_<weekday>", TIME: "HH:MM, 24-hour"}
# A name the student writes as one word of `fn ( a = v )`: its tokenizer splits at dots
# and dashes, so a name has none.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_RULE = "letters, digits and _, starting with a letter or _"


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
        return [{"name": f.name, "description": f.description,
                 "args": [{"name": a.name, "type": a.type, "required": a.required, "enum": list(a.enum)}
                          for a in f.args]} for f in self.functions.values()]

    def tools(self) -> list[dict]:
        """The catalog as OpenAI-style tools (JSON schema), for a chat template's `tools`."""
        out = []
        for f in self.functions.values():
            props = {}
            for a in f.args:
                prop: dict[str, Any] = {"type": _JSON_TYPES[a.type]}
                if a.enum:
                    prop["enum"] = list(a.enum)
                text = " ".join(t for t in (a.description, _FORMATS.get(a.type, "")) if t)
                if text:
                    prop["description"] = text
                props[a.name] = prop
            fn: dict[str, Any] = {"name": f.name}
            if f.description:
                fn["description"] = f.description
            fn["parameters"] = {"type": "object", "properties": props,
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

    def words_for(self, value: str) -> tuple[str, ...]:
        return self.enum_words.get(value, (value,))

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
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DataError(f"{where}: argument name {name!r} is not a name ({_NAME_RULE})")
    where = f"{where}.{name}"
    if not isinstance(prop, dict):
        raise DataError(f"{where}: a property is a JSON Schema object, not {type(prop).__name__}")
    kind = prop.get("type", "string" if "enum" in prop else None)  # JSON Schema: an enum needs no type
    if kind not in _FROM_JSON:
        raise DataError(f"{where}: unknown type {kind!r} (string, number, integer, boolean, or a string enum)")
    description = str(prop.get("description", ""))
    words = prop.get("x-words")
    if "enum" in prop:
        values = prop["enum"]
        if kind != "string":
            raise DataError(f"{where}: enum needs type string, not {kind!r}")
        if not isinstance(values, list) or not values:
            raise DataError(f"{where}: enum is empty")
        if not all(isinstance(v, str) and v.strip() for v in values) or len(set(values)) != len(values):
            raise DataError(f"{where}: enum values must be distinct non-empty strings")
        if words is not None and not (isinstance(words, dict) and set(words) <= set(values) and all(
                isinstance(w, list) and all(isinstance(x, str) and x.strip() for x in w) for w in words.values())):
            raise DataError(f"{where}: x-words must map enum values to lists of words")
        for v in values:
            extra = tuple((words or {}).get(v, ()))
            spaced = (v.replace("_", " "),) if "_" in v else ()
            enum_words[v] = tuple(dict.fromkeys(enum_words.get(v, (v,)) + spaced + extra))
        return Arg(name, ENUM, required, tuple(values), description)
    fmt = prop.get("format")
    if kind == "string" and fmt in ("date", "time"):
        return Arg(name, DATE if fmt == "date" else TIME, required, (), description)
    if kind == "boolean" and words is not None:
        if not (isinstance(words, list) and words and all(isinstance(w, str) and w.strip() for w in words)):
            raise DataError(f"{where}: x-words of a boolean is a list of words")
        bool_words[name] = tuple(words)
    return Arg(name, _FROM_JSON[kind], required, (), description)


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
    family = tool.get("x-family", name)
    if not isinstance(family, str) or not family.isidentifier():
        raise DataError(f"{where}: x-family {family!r} is not a skill name")
    return Function(name, family, args, str(tool.get("description", "")))


def load(path: Path | str) -> Catalog:
    """The catalog in `path`, checked; a `DataError` names the function and field at fault."""
    path = Path(path)
    doc = _read(path)
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
        has_enum = any(a.type == ENUM for f in functions.values() for a in f.args)
        phenomena = [s for s in GENERIC_SKILLS if s != "enums" or has_enum]
    clash = set(phenomena) & {f.family for f in functions.values()}
    if clash:
        raise DataError(f"{path}: {sorted(clash)[0]}: a function family has the name of a cross-cutting skill")
    return Catalog(functions, enum_words, bool_words, tuple(phenomena), str(path))


SHIPPED_FILE = Path(__file__).with_name("tools.json")
SHIPPED = load(SHIPPED_FILE)

# The shipped catalog's parts, for the embedded request generator written for it.
FUNCTIONS = SHIPPED.functions
FAMILIES = SHIPPED.families
PHENOMENA = SHIPPED.phenomena
SKILLS = SHIPPED.skills
ENUM_WORDS = SHIPPED.enum_words
BOOL_WORDS = SHIPPED.bool_words
