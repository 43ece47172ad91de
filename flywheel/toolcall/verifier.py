"""The embedded verifier cascade: deterministic checks a label must pass.

`check` runs schema, then types and enums, then grounding (every argument value must
be derivable from the words of the request; inside an array or object, every scalar). It returns the reasons a label fails, in
cascade order; an empty list means it passes. `repair` tries the one safe fix: when a
value fails and the request offers exactly one candidate of that type, take it.

What the cascade cannot see on its own (swapped arguments, a forgotten optional
argument, a sibling function whose arguments fit) is left to the judge's comparison with
the student (see `tasks/judge.py`).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flywheel.toolcall import surface
from flywheel.toolcall.calls import Call
from flywheel.toolcall.catalog import ARRAY, BOOL, DATE, ENUM, INT, NUMBER, OBJECT, STR, TIME, WEEKDAYS, Arg, Catalog

# The flywheel's date values, and ISO 8601 dates (YYYY-MM-DD) as catalogs of your own use them.
_DATE_VALUE = re.compile(r"(\d{4}-)?(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])|today|tomorrow|\+[2-9]d|next_("
                         + "|".join(WEEKDAYS) + ")")
_ISO = re.compile(r"\d{4}-\d\d-\d\d")
_TIME_VALUE = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


def _enum_surfaces(catalog: Catalog) -> frozenset[str]:
    return frozenset(surface.normalise(w) for words in catalog.enum_words.values() for w in words)


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(phrase)}(?![\w])", text) is not None


def dates_in(text: str) -> list[str]:
    """Every canonical date a request's words can mean, in order of appearance."""
    return surface.dates_in(surface.normalise(text))


def numbers_in(text: str) -> list[float]:
    return surface.numbers_in(surface.normalise(text))


def _type_ok(kind: str, value: Any, enum: tuple) -> bool:
    if kind == STR:
        return isinstance(value, str) and value.strip() != ""
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == ENUM:  # the value and its type: an enum of 1 and 2 does not take True
        return any(value == v and type(value) is type(v) for v in enum)
    if kind == DATE:
        return isinstance(value, str) and _DATE_VALUE.fullmatch(value) is not None
    if kind == TIME:
        return isinstance(value, str) and _TIME_VALUE.fullmatch(value) is not None
    if kind == BOOL:
        return isinstance(value, bool)
    return False


def _grounded(catalog: Catalog, text: str, name: str, kind: str, value: Any) -> bool:
    """Is `value` derivable from the words of normalised `text`?"""
    if kind == STR:  # an enum's word (a unit, a currency) is never a name, title or text
        phrase = surface.normalise(value)
        return _has_phrase(text, phrase) and phrase not in _enum_surfaces(catalog)
    if kind in (NUMBER, INT):
        return float(value) in surface.numbers_in(text)
    if kind == ENUM:
        return any(_has_phrase(text, surface.normalise(w)) for w in catalog.words_for(value))
    if kind == DATE:  # an ISO date: its year said in the request, and its day as any notation says it
        if _ISO.fullmatch(value):
            return value in text or (value[:4] in text and value[5:] in surface.dates_in(text))
        return value in surface.dates_in(text)
    if kind == TIME:
        return value in surface.times_in(text)
    if kind == BOOL:
        return (not value) or any(_has_phrase(text, surface.normalise(w)) for w in catalog.switch_words(name))
    return False


_FREE_KIND = {str: STR, bool: BOOL, int: NUMBER, float: NUMBER}


def _problems(catalog: Catalog, text: str | None, where: str, spec: Arg, value: Any) -> list[str]:
    """Why `value` is not a valid, grounded value of `spec` (schema, type, grounding), for
    an argument, an array's items and an object's fields alike; `text` None: no grounding."""
    if spec.type == ARRAY:
        if not isinstance(value, list):
            return [f"type: {where}={value!r} is not an array"]
        return [r for i, item in enumerate(value) for r in _problems(catalog, text, f"{where}[{i}]", spec.items, item)]
    if spec.type == OBJECT:
        if not isinstance(value, dict):
            return [f"type: {where}={value!r} is not an object"]
        if spec.free:  # any JSON object: its scalars are grounded by their own type
            return [r for k, v in value.items() for r in _free(catalog, text, f"{where}.{k}", v)]
        reasons = [f"schema: {where} has no field {k!r}" for k in value if spec.field(k) is None]
        reasons += [f"schema: {where} misses required {f.name!r}" for f in spec.fields if f.required and f.name not in value]
        if reasons:
            return reasons
        return [r for k, v in value.items() for r in _problems(catalog, text, f"{where}.{k}", spec.field(k), v)]
    if not _type_ok(spec.type, value, spec.enum):
        return [f"type: {where}={value!r} is not a valid {spec.type}"]
    if text is not None and not _grounded(catalog, text, spec.name, spec.type, value):
        return [f"grounding: {where}={value!r} is not in the request"]
    return []


def _free(catalog: Catalog, text: str, where: str, value: Any) -> list[str]:
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _free(catalog, text, f"{where}[{i}]", v)]
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _free(catalog, text, f"{where}.{k}", v)]
    if value is None or text is None:
        return []
    kind = _FREE_KIND[type(value)]
    if kind == BOOL or _grounded(catalog, text, where, kind, value):
        return []
    return [f"grounding: {where}={value!r} is not in the request"]


def check(request: str | None, calls: list[Call], catalog: Catalog) -> list[str]:
    """Why `calls` is not a valid, grounded label for `request` in `catalog` ([] when it is;
    `request` None: valid calls of the catalog, grounding not asked)."""
    reasons: list[str] = []
    text = surface.normalise(request) if request is not None else None
    for call in calls:
        fn = catalog.functions.get(call.get("name"))
        if fn is None:
            return [f"schema: unknown function {call.get('name')!r}"]
        args = call.get("arguments") or {}
        for name in args:
            if fn.arg(name) is None:
                reasons.append(f"schema: {fn.name} has no argument {name!r}")
        for spec in fn.args:
            if spec.required and spec.name not in args:
                reasons.append(f"schema: {fn.name} misses required {spec.name!r}")
        if reasons:
            return reasons
        for name, value in args.items():
            reasons += _problems(catalog, text, f"{fn.name}.{name}", fn.arg(name), value)
    return reasons


def _candidates(catalog: Catalog, text: str, kind: str, enum: tuple[str, ...]) -> list[Any]:
    if kind == DATE:
        return sorted(set(surface.dates_in(text)))
    if kind == NUMBER:
        return sorted(set(surface.numbers_in(text)))
    if kind == TIME:
        return sorted(set(surface.times_in(text)))
    if kind == ENUM:
        return [v for v in enum if any(_has_phrase(text, surface.normalise(w)) for w in catalog.words_for(v))]
    return []


def repair(request: str, calls: list[Call], catalog: Catalog) -> list[Call] | None:
    """A corrected label when every failing value has exactly one candidate in the request."""
    fixed = copy.deepcopy(calls)
    text = surface.normalise(request)
    for call in fixed:
        fn = catalog.functions.get(call.get("name"))
        if fn is None:
            return None
        for name, value in list((call.get("arguments") or {}).items()):
            spec = fn.arg(name)
            if spec is None:
                return None
            if not _problems(catalog, text, name, spec, value):
                continue
            options = _candidates(catalog, text, spec.type, spec.enum)
            if len(options) != 1:
                return None
            call["arguments"][name] = options[0]
    return fixed if fixed != calls and not check(request, fixed, catalog) else None
