"""The embedded teacher's labels: the request's true calls, made wrong with a
skill-dependent probability (the simulated teacher's error model).

It stands in for an LLM teacher. It knows the true calls (it drew the request), and
returns a candidate label that is wrong with a skill-dependent probability, in the ways
LLM labelers are wrong: a value not in the request, swapped arguments, a date off by a
day, a forgotten optional argument, a sibling function, a number as text, a missed
second call, a call where none was asked for. Some of these the verifier can see
(ungrounded values, bad types); others (swaps, omissions, sibling functions) only a
disagreeing student can reveal. The truth goes to a separate file that only the judge's
quality measurement reads.
"""

from __future__ import annotations

import copy
import random

from flywheel.toolcall.calls import Call
from flywheel.toolcall.catalog import DATE, ENUM, NUMBER, STR, WEEKDAYS
from flywheel.toolcall.phrasings import FUNCTIONS, Request, values


def error_rate(skills: tuple[str, ...], rates: dict[str, float], default: float) -> float:
    """A row is as error-prone as its hardest skill."""
    return max([rates.get(s, default) for s in skills] + [default])


def _shift_date(value: str, rng: random.Random) -> str:
    if value == "today":
        return "tomorrow"
    if value == "tomorrow":
        return "+2d"
    if value.startswith("+"):
        return f"+{int(value[1:-1]) + 1}d"
    if value.startswith("next_"):
        return "next_" + rng.choice([d for d in WEEKDAYS if d != value[5:]])
    month, day = value.split("-")
    return f"{month}-{int(day) % 28 + 1:02d}"


def _mistakes(call: Call) -> list[str]:
    fn = FUNCTIONS[call["name"]]
    args = call["arguments"]
    kinds = []
    if any(fn.arg(a).type == STR for a in args):
        kinds.append("wrong_value")
    if len([a for a in args if fn.arg(a).type in (ENUM, STR)]) >= 2:
        kinds.append("swap_args")
    if any(fn.arg(a).type == DATE for a in args):
        kinds.append("wrong_date")
    if any(not fn.arg(a).required for a in args):
        kinds.append("drop_optional")
    if any(a.type == NUMBER for a in fn.args):
        kinds.append("bad_type")
    kinds.append("wrong_function")
    return kinds


def corrupt(rng: random.Random, calls: list[Call]) -> tuple[list[Call], str]:
    """A plausible wrong label for `calls`, and the kind of mistake made."""
    if not calls:
        fn = FUNCTIONS["get_weather"]
        return [{"name": fn.name, "arguments": {"city": rng.choice(values("city", "train"))}}], "spurious_call"
    label = copy.deepcopy(calls)
    if len(label) == 2 and rng.random() < 0.4:
        return [label[rng.randrange(2)]], "missed_call"
    call = rng.choice(label)
    fn, args = FUNCTIONS[call["name"]], call["arguments"]
    kind = rng.choice(_mistakes(call))
    if kind == "wrong_value":
        name = rng.choice([a for a in args if fn.arg(a).type == STR])
        pool = "city" if name in ("city", "origin", "destination") else name
        choices = values(pool, "train")
        value = rng.choice(choices)
        while value == args[name]:
            value = rng.choice(choices)
        args[name] = value
    elif kind == "swap_args":
        names = [a for a in args if fn.arg(a).type in (ENUM, STR)][:2]
        args[names[0]], args[names[1]] = args[names[1]], args[names[0]]
    elif kind == "wrong_date":
        name = next(a for a in args if fn.arg(a).type == DATE)
        args[name] = _shift_date(args[name], rng)
    elif kind == "drop_optional":
        del args[rng.choice([a for a in args if not fn.arg(a).required])]
    elif kind == "bad_type":
        name = next(a.name for a in fn.args if a.type == NUMBER)
        args[name] = f"{args[name]} units"
    else:  # wrong_function: a sibling in the same family, keeping what arguments fit
        siblings = [f for f in FUNCTIONS.values() if f.family == fn.family and f.name != fn.name]
        other = rng.choice(siblings)
        call["name"] = other.name
        call["arguments"] = {k: v for k, v in args.items() if other.arg(k) is not None}
    return label, kind


def label(rng: random.Random, request: Request, rates: dict[str, float], default: float):
    """(candidate label, true label, error kind or '') for one request."""
    if rng.random() < error_rate(request.skills, rates, default):
        wrong, kind = corrupt(rng, request.calls)
        return wrong, request.calls, kind
    return request.calls, request.calls, ""
