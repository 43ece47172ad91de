"""Calls as data: the canonical form, its text for the student, and scoring with BFCL's rules.

A label is a list of calls, each `{"name": str, "arguments": {name: value}}`; an empty
list means the request needs no call. A call may also carry `accept`: BFCL's
possible-answer form, each argument a list of acceptable values (`""` in the list: it may
be left out), objects inside as objects of such lists; `arguments` is then its first
acceptable value of each (`plain`). Labels are stored as canonical JSON (sorted keys), so
equal labels are equal strings and hash the same.

`accepts` is the one scorer, with the semantics of BFCL's AST checker
(bfcl_eval/eval_checker/ast_eval/ast_checker.py): the same number of calls, matched in the
label's order to the first unmatched answer call that fits (so parallel calls in any
order); per call the same function, every required argument, no argument the label does
not list, each value among the acceptable ones (strings compared without case, spaces and
`,./-_*^`), a value's JSON type the schema's (an integer for a number is taken, a float
for an integer is not), an optional argument left out only where `""` allows it.
tests/test_bfcl.py holds it to BFCL's own checker on BFCL's own data.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flywheel.toolcall.catalog import ARRAY, BOOL, DATE, ENUM, INT, NUMBER, OBJECT, STR, TIME, Arg, Catalog, \
    Function

Call = dict[str, Any]
NO_CALL = "none"
CALL_SEP = ";"


def dumps(calls: list[Call]) -> str:
    return json.dumps(calls, sort_keys=True, separators=(",", ":"))


def loads(text: str) -> list[Call]:
    return json.loads(text)


# --- BFCL's possible-answer form -------------------------------------------------------------

def possible(value: Any) -> list:
    """One plain argument value as BFCL's list of acceptable values (just itself). As in
    BFCL's data, an object's fields (and those of the objects in an array) are lists of
    acceptable values one level deep; what is nested deeper is one literal value."""
    if isinstance(value, dict):
        return [{k: [v] for k, v in value.items()}]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [[{k: [x] for k, x in v.items()} for v in value]]
    return [value]


def _first(alternatives: Any, where: str) -> tuple[bool, Any]:
    """(present, value): the first acceptable value, absent where it is `""` or there is none."""
    if not isinstance(alternatives, list):
        raise ValueError(f"{where}: a possible answer is a list of acceptable values")
    if not alternatives or alternatives[0] == "":
        return False, None
    return True, alternatives[0]


def plain(answers: dict[str, Any], where: str = "answer") -> dict[str, Any]:
    """The arguments a possible answer names first (an argument whose first acceptable
    answer is `""`, or that has none, is left out); ValueError when an argument's answers
    are not a list."""
    out = {}
    for name, alternatives in answers.items():
        present, first = _first(alternatives, f"{where}.{name}")
        if not present:
            continue
        if isinstance(first, dict):
            first = _plain_fields(first, f"{where}.{name}")
        elif isinstance(first, list) and first and all(isinstance(v, dict) for v in first):
            first = [_plain_fields(v, f"{where}.{name}[{i}]") for i, v in enumerate(first)]
        out[name] = first
    return out


def _plain_fields(answers: dict, where: str) -> dict:
    out = {}
    for name, alternatives in answers.items():
        present, first = _first(alternatives, f"{where}.{name}")
        if present:
            out[name] = first
    return out


def from_possible_answer(answer: dict[str, dict], where: str = "answer") -> Call:
    """A call from one BFCL ground-truth entry `{function: {argument: [acceptable, ...]}}`."""
    if not (isinstance(answer, dict) and len(answer) == 1):
        raise ValueError(f"{where}: a possible answer is {{function: {{argument: [values]}}}}")
    (name, args), = answer.items()
    if not isinstance(args, dict):
        raise ValueError(f"{where}.{name}: arguments must be an object")
    return {"name": name, "arguments": plain(args, f"{where}.{name}"), "accept": args}


# --- scoring ---------------------------------------------------------------------------------

def standardize(text: str) -> str:
    """BFCL's string comparison: no spaces or `,./-_*^`, lower case, ' as "."""
    return re.sub(r"[ ,./\-_*^]", "", text).lower().replace("'", '"')


_PY_TYPES = {STR: str, DATE: str, TIME: str, NUMBER: float, INT: int, BOOL: bool, ARRAY: list, OBJECT: dict}
_BASE_TYPES = {"string": str, "number": float, "integer": int, "boolean": bool}


def _expected_type(spec: Arg) -> type:
    return _BASE_TYPES[spec.base] if spec.type == ENUM else _PY_TYPES[spec.type]


def _answer_type(alternatives: list) -> type | None:
    return next((type(a) for a in alternatives if a != ""), None)


def _type_fits(value: Any, alternatives: list, expected: type, nested: Arg | None) -> tuple[bool, bool]:
    """(fits, is_variable) as BFCL's type_checker: the schema's type, or the type the
    answer itself has (a variable name written for a value)."""
    answer_type = _answer_type(alternatives)
    variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if nested is None:  # BFCL checks the type of an array's items, one level deep
            return True, variable
        inner = _expected_type(nested)
        for alt in alternatives:
            if not isinstance(alt, list) or all(_type_fits(v, alt, inner, None)[0] for v in value):
                return True, variable
        return False, variable
    return answer_type is not None and type(value) is answer_type, True


def _standard(value: Any) -> Any:
    return standardize(value) if isinstance(value, str) else value


def _dict_ok(value: dict, alternatives: list) -> bool:
    """BFCL's dict_checker: every field among the acceptable values of one alternative
    (strings standardised; what is nested deeper compared as it is), every field the
    alternative lists present unless `""` allows it."""
    for alt in alternatives:
        if alt == "" or not isinstance(alt, dict):
            continue
        if all(k in alt and isinstance(alt[k], list) and _standard(v) in [_standard(a) for a in alt[k]]
               for k, v in value.items()) and all(k in value or "" in alts for k, alts in alt.items()):
            return True
    return False


def value_ok(spec: Arg | None, value: Any, alternatives: list) -> bool:
    """Is `value` one of `alternatives` for an argument of schema `spec` (None: unknown, the
    answer's own type is the type)."""
    expected = _expected_type(spec) if spec is not None else (_answer_type(alternatives) or type(value))
    if expected is float and type(value) is int:  # an integer is a number
        value = float(value)
    items = spec.items if spec is not None and spec.type == ARRAY else None
    fits, variable = _type_fits(value, alternatives, expected, items)
    if not fits:
        return False
    if not variable:
        if expected is dict:
            return _dict_ok(value, alternatives)
        if expected is list and items is not None and items.type == OBJECT:
            return any(isinstance(alt, list) and len(alt) == len(value)
                       and all(_dict_ok(v, [a]) for v, a in zip(value, alt)) for alt in alternatives)
        if expected is str:
            return standardize(value) in [standardize(a) for a in alternatives if isinstance(a, str)]
        if expected is list:
            return [_standard(v) for v in value] in [[_standard(v) for v in alt] for alt in alternatives
                                                      if isinstance(alt, list)]
    return value in alternatives


def _call_ok(got: Call, want: Call, fn: Function | None) -> bool:
    if got.get("name") != want.get("name"):
        return False
    args = got.get("arguments") or {}
    answers = want.get("accept") or {k: possible(v) for k, v in (want.get("arguments") or {}).items()}
    required = [a.name for a in fn.args if a.required] if fn is not None else []
    if any(r not in args for r in required):
        return False
    for name, value in args.items():
        spec = fn.arg(name) if fn is not None else None
        if name not in answers or (fn is not None and spec is None):
            return False
        if not value_ok(spec, value, answers[name]):
            return False
    return all(name in args or "" in alternatives for name, alternatives in answers.items())


def accepts(predicted: list[Call] | None, expected: list[Call], catalog: Catalog) -> bool:
    """Does the answer `predicted` (None: unreadable) make the calls `expected` allows? A
    call of a function `catalog` lacks (a tool the request did not offer) is wrong."""
    if predicted is None or len(predicted) != len(expected):
        return False
    used: set[int] = set()
    for want in expected:
        fn = catalog.functions.get(want.get("name"))
        if fn is None:
            return False
        hit = next((i for i, got in enumerate(predicted) if i not in used and _call_ok(got, want, fn)), None)
        if hit is None:
            return False
        used.add(hit)
    return True


# --- the built-in student's text ------------------------------------------------------------

_LITERALS = {"true": True, "false": False, "null": None}
_NUMERAL = re.compile(r"-?\d+(\.\d+)?")
_MARKS = {",", ";", "=", "(", ")", "[", "]", "{", "}", NO_CALL}


def _quoted(text: str) -> bool:
    """A string the call text writes in quotes: one that would read as a literal, a number,
    a mark of the call text itself, or nothing."""
    return (text.lower() in _LITERALS or _NUMERAL.fullmatch(text) is not None or text.strip() != text or not text
            or text in _MARKS)


def _render_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str) and _quoted(value):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[ " + " , ".join(_render_value(v) for v in value) + " ]" if value else "[ ]"
    if isinstance(value, dict):
        return "{ " + " , ".join(f"{k} = {_render_value(v)}" for k, v in value.items()) + " }" if value else "{ }"
    return str(value)


def render(calls: list[Call]) -> str:
    """The label as the student reads and writes it: `fn ( a = v , b = [ x , y ] , c = { k = w } ) ; ...`."""
    if not calls:
        return NO_CALL
    parts = []
    for call in calls:
        args = " , ".join(f"{k} = {_render_value(v)}" for k, v in sorted(call["arguments"].items()))
        parts.append(f"{call['name']} ( {args} )")
    return f" {CALL_SEP} ".join(parts)


_COMPACT = re.compile(r"[\d.:+\-]+d?")
_PIECE = re.compile(r"\d+|[^\w\s]|d")  # what the built-in student's tokenizer splits a number or date into


def _coerce(spec: Arg | None, words: list[str]) -> Any:
    """Turn the student's value words back into a typed value (best effort): pieces of a
    number or date the tokenizer split are joined again; `null` is null."""
    compact = "".join(words)
    pieces = len(words) > 1 and all(_PIECE.fullmatch(w) for w in words)
    text = compact if (pieces or len(words) == 1) and _COMPACT.fullmatch(compact) else " ".join(words)
    kind = spec.type if spec is not None else None
    if len(text) >= 2 and text[0] == text[-1] == '"':  # a string that would read as something else
        quoted = text[1:-1] if len(words) == 1 else text[1:-1].strip()
        return next((v for v in spec.enum if v == quoted), quoted) if kind == ENUM else quoted
    if text.lower() in _LITERALS:  # unquoted, a literal is one whatever the schema says (BFCL's "variables")
        return _LITERALS[text.lower()]
    numeral = _NUMERAL.fullmatch(text) is not None
    if kind is None or (kind == STR and numeral):  # a free object's field, or a number written for a string
        return (float(text) if "." in text else int(text)) if numeral else text
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
        match = next((v for v in spec.enum if _render_value(v).lower() == text.lower()), None)
        if match is not None:
            return match
        return (float(text) if "." in text else int(text)) if numeral else text.lower()
    return text


def _split(tokens: list[str], sep: str) -> list[list[str]] | None:
    """`tokens` cut at `sep` outside brackets (None when the brackets do not balance)."""
    parts: list[list[str]] = [[]]
    depth = 0
    for tok in tokens:
        if tok in ("(", "[", "{"):
            depth += 1
        elif tok in (")", "]", "}"):
            depth -= 1
            if depth < 0:
                return None
        if tok == sep and depth == 0:
            parts.append([])
        else:
            parts[-1].append(tok)
    return parts if depth == 0 else None


def _fields(tokens: list[str], spec_of) -> dict[str, Any] | None:
    """`k = v , ...` as a dict (None when malformed)."""
    out: dict[str, Any] = {}
    if not tokens:
        return out
    for fld in _split(tokens, ",") or [[]]:
        if len(fld) < 3 or fld[1] != "=" or fld[0] in out:
            return None
        value = _value(spec_of(fld[0]), fld[2:])
        if value is _BAD:
            return None
        out[fld[0]] = value
    return out


_BAD = object()


def _value(spec: Arg | None, tokens: list[str]) -> Any:
    if tokens[0] == "[" and tokens[-1] == "]":
        inner = tokens[1:-1]
        items = _split(inner, ",") if inner else []
        if items is None or any(not t for t in items):
            return _BAD
        item_spec = spec.items if spec is not None and spec.type == ARRAY else None
        values = [_value(item_spec, t) for t in items]
        return _BAD if any(v is _BAD for v in values) else values
    if tokens[0] == "{" and tokens[-1] == "}":
        fields = _fields(tokens[1:-1], lambda k: spec.field(k) if spec is not None else None)
        return _BAD if fields is None else fields
    return _coerce(spec, tokens)


def parse(tokens: list[str], catalog: Catalog) -> list[Call] | None:
    """Parse the student's output tokens (values typed by `catalog`); None when it is not a
    well-formed call list."""
    if tokens == [NO_CALL]:
        return []
    calls: list[Call] = []
    for chunk in _split(tokens, CALL_SEP) or [[]]:
        if len(chunk) < 3 or chunk[1] != "(" or chunk[-1] != ")":
            return None
        name = chunk[0]
        fn = catalog.functions.get(name)
        args = _fields(chunk[2:-1], lambda k: fn.arg(k) if fn is not None else None)
        if args is None:
            return None
        calls.append({"name": name, "arguments": args})
    return calls


PARSER_VERSION = "toolcall-json-calls-v1"


def answer_schema(catalog: Catalog) -> dict:
    """The JSON schema of a list of calls of `catalog`'s functions, each a name and the
    arguments its parameters allow (the catalog's own tool schemas): what `parse_json`
    reads, for a server that constrains its output (backend `response_format: json_schema`)."""
    one = [{"type": "object", "properties": {"name": {"const": t["function"]["name"]},
                                             "arguments": t["function"]["parameters"]},
            "required": ["name", "arguments"], "additionalProperties": False} for t in catalog.tools()]
    return {"type": "array", "items": {"anyOf": one} if one else {"type": "object"}}


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


def map_strings(label: list[Call], fn) -> list[Call]:
    """The label with `fn` applied to every string value (arguments and alternatives, at any depth)."""
    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return fn(v) if v else v
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    return [dict(c, arguments=walk(c.get("arguments", {})), **({"accept": walk(c["accept"])} if "accept" in c else {}))
            for c in label]


def accept_label(value: Any) -> str:
    """A labelled file's calls as a canonical label: each call `{name, arguments}` with
    plain values, or BFCL's `{function: {argument: [acceptable values]}}` (kept as `accept`)
    (ValueError if neither)."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("not a JSON list of calls")
    out = []
    for i, call in enumerate(value):
        if isinstance(call, dict) and "name" not in call and len(call) == 1:
            out.append(from_possible_answer(call, f"call {i + 1}"))
        elif isinstance(call, dict) and "accept" in call:
            made = from_possible_answer({call.get("name"): call["accept"]}, f"call {i + 1}")
            out.append(dict(made, arguments=call.get("arguments", made["arguments"])))
        else:
            out.extend(loads(canonical([call])))
    return dumps(out)
