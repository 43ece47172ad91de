"""Calls as data: the canonical form, its text for the student, and AST-match scoring.

A label is a list of calls, each `{"name": str, "arguments": {name: value}}`; an empty
list means the request needs no call. Labels are stored as canonical JSON (sorted
keys), so equal labels are equal strings and hash the same.

Scoring follows BFCL's AST match: same function names and, per call, the same
argument names with normalised values; the order of arguments and of calls is free.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

from flywheel.toolcall.catalog import BOOL, DATE, ENUM, INT, NUMBER, SHIPPED, TIME, Catalog

Call = dict[str, Any]
NO_CALL = "none"
CALL_SEP = ";"


def dumps(calls: list[Call]) -> str:
    return json.dumps(calls, sort_keys=True, separators=(",", ":"))


def loads(text: str) -> list[Call]:
    return json.loads(text)


_PUNCT_SPACE = re.compile(r"\s*([^\w\s])\s*")


def _norm_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return round(float(value), 6)
    if isinstance(value, str):  # case, spacing and the spaces around punctuation do not count
        return _PUNCT_SPACE.sub(r"\1", " ".join(value.lower().split()))
    return value


def _call_key(call: Call) -> tuple:
    args = call.get("arguments") or {}
    return (call.get("name"), tuple(sorted((k, repr(_norm_value(v))) for k, v in args.items())))


def ast_match(predicted: list[Call] | None, expected: list[Call]) -> bool:
    """True when `predicted` makes the same calls as `expected` (order free)."""
    if predicted is None:
        return False
    return Counter(map(_call_key, predicted)) == Counter(map(_call_key, expected))


def _render_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def render(calls: list[Call]) -> str:
    """The label as the student reads and writes it: `fn ( a = v , b = w ) ; ...`."""
    if not calls:
        return NO_CALL
    parts = []
    for call in calls:
        args = " , ".join(f"{k} = {_render_value(v)}" for k, v in sorted(call["arguments"].items()))
        parts.append(f"{call['name']} ( {args} )")
    return f" {CALL_SEP} ".join(parts)


_COMPACT = re.compile(r"[\d.:+\-]+d?")


def _coerce(catalog: Catalog, fn_name: str, arg: str, words: list[str]) -> Any:
    """Turn the student's value tokens back into a typed value (best effort)."""
    compact = "".join(words)
    text = compact if _COMPACT.fullmatch(compact) else " ".join(words)
    fn = catalog.functions.get(fn_name)
    spec = fn.arg(arg) if fn else None
    kind = spec.type if spec else None
    try:
        if kind == NUMBER:
            number = float(text.replace(",", "")) if re.fullmatch(r"[\d,]+(\.\d+)?", text) else float(text)
            return number if math.isfinite(number) else text
        if kind == INT:
            return int(text.replace(",", ""))
    except ValueError:
        return text
    if kind == BOOL and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kind in (DATE, TIME):
        return compact.lower()
    if kind == ENUM:  # a copied word keeps the request's case: the catalog's value, whatever the case
        return next((v for v in spec.enum if v.lower() == text.lower()), text.lower())
    return text


def parse(tokens: list[str], catalog: Catalog = SHIPPED) -> list[Call] | None:
    """Parse the student's output tokens (values typed by `catalog`); None when it is not a
    well-formed call list."""
    if tokens == [NO_CALL]:
        return []
    calls: list[Call] = []
    chunks: list[list[str]] = [[]]
    for tok in tokens:
        if tok == CALL_SEP:
            chunks.append([])
        else:
            chunks[-1].append(tok)
    for chunk in chunks:
        if len(chunk) < 3 or chunk[1] != "(" or chunk[-1] != ")":
            return None
        name, body = chunk[0], chunk[2:-1]
        args: dict[str, Any] = {}
        if body:
            fields: list[list[str]] = [[]]
            for tok in body:
                if tok == ",":
                    fields.append([])
                else:
                    fields[-1].append(tok)
            for fld in fields:
                if len(fld) < 3 or fld[1] != "=" or fld[0] in args:
                    return None
                args[fld[0]] = _coerce(catalog, name, fld[0], fld[2:])
        calls.append({"name": name, "arguments": args})
    return calls


PARSER_VERSION = "toolcall-json-calls-v1"


def parse_json(text: str) -> str:
    """A teacher or judge model's JSON list of calls, as a canonical label (ValueError if not one)."""
    from flywheel.backends.committee import extract_json

    return canonical(extract_json(text))


def canonical(value: Any) -> str:
    """`value` as a canonical label, if it is a list of {name, arguments} calls (ValueError if not)."""
    if isinstance(value, dict) and "name" in value:
        value = [value]
    if not isinstance(value, list):
        raise ValueError("not a JSON list of calls")
    for call in value:
        if not (isinstance(call, dict) and isinstance(call.get("name"), str)
                and isinstance(call.get("arguments", {}), dict)):
            raise ValueError("each call needs a string 'name' and an object 'arguments'")
    return dumps([{"name": c["name"], "arguments": c.get("arguments", {})} for c in value])
