"""Natural-language requests of the `toolcall` domain and their true calls.

A request is drawn from a *spec* (which functions, which phenomena to show) by filling
a phrasing template with slot values. Phrasings and values come in sets:

- phrasings `seed` (the seed set and every generation), `gen` (only the teacher knows
  them, so they reach the student through generated data) and `heldout` (evaluation
  only, never generated);
- values `train` (generation) and `heldout` (evaluation only).

The evaluation set mixes all of them, so its score measures how far the student
generalises beyond what the generator can show it.

Template syntax: `{arg}` is a slot; `[...]` is an optional segment, kept when the spec
asks for that phenomenon (or by coin flip).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from flywheel.toolcall.calls import Call
from flywheel.toolcall.catalog import (
    BOOL, BOOL_WORDS, DATE, ENUM, ENUM_WORDS, FAMILIES, FUNCTIONS, INT, MONTHS, NUMBER,
    NUMBER_WORDS, STR, TIME, WEEKDAYS,
)

_UNIT_TEMPLATES = {
    "seed": ["convert {value} {from_unit} to {to_unit}", "how many {to_unit} is {value} {from_unit}"],
    "gen": ["{value} {from_unit} in {to_unit}", "what is {value} {from_unit} in {to_unit}",
            "change {value} {from_unit} to {to_unit}"],
    "heldout": ["express {value} {from_unit} as {to_unit}"],
}

TEMPLATES: dict[str, dict[str, list[str]]] = {
    "get_weather": {
        "seed": ["what is the weather in {city} [{date}] [in {unit}]", "weather for {city} [{date}]"],
        "gen": ["will it rain in {city} [{date}]", "how warm is it in {city} [{date}] [in {unit}]",
                "tell me the weather in {city} [{date}] [in {unit}]", "is it sunny in {city} [{date}]"],
        "heldout": ["do i need an umbrella in {city} [{date}]",
                    "temperature in {city} [{date}] please [in {unit}]"],
    },
    "get_forecast": {
        "seed": ["forecast for {city} for the next {days} days", "{days} day forecast for {city}"],
        "gen": ["what will the weather be in {city} over the next {days} days",
                "give me a {days} day forecast in {city}", "show the forecast for {city} for {days} days"],
        "heldout": ["outlook for {city} for the coming {days} days"],
    },
    "create_event": {
        "seed": ["schedule {title} {date} [at {time}] [{all_day}]", "add {title} to my calendar {date} [at {time}]"],
        "gen": ["create an event called {title} {date} [at {time}] [{all_day}]",
                "put {title} on my calendar {date} [{all_day}]", "book {title} {date} [at {time}]"],
        "heldout": ["pencil in {title} {date} [at {time}]"],
    },
    "list_events": {
        "seed": ["what is on my calendar {date}", "show my events {date}"],
        "gen": ["what do i have {date}", "list my meetings {date}", "am i busy {date}"],
        "heldout": ["anything planned {date}"],
    },
    "convert_currency": {
        "seed": ["convert {amount} {from_currency} to {to_currency}",
                 "how much is {amount} {from_currency} in {to_currency}"],
        "gen": ["change {amount} {from_currency} into {to_currency}",
                "what are {amount} {from_currency} worth in {to_currency}",
                "exchange {amount} {from_currency} to {to_currency}"],
        "heldout": ["i have {amount} {from_currency} , how many {to_currency} is that"],
    },
    "get_exchange_rate": {
        "seed": ["exchange rate from {base} to {target}", "what is the rate of {base} to {target}"],
        "gen": ["how many {target} for one {base}", "current {base} to {target} rate",
                "rate between {base} and {target}"],
        "heldout": ["what does one {base} buy in {target}"],
    },
    "convert_length": _UNIT_TEMPLATES,
    "convert_weight": _UNIT_TEMPLATES,
    "set_reminder": {
        "seed": ["remind me to {text} {date} [{repeat}]", "set a reminder to {text} {date}"],
        "gen": ["do not let me forget to {text} {date} [{repeat}]", "reminder : {text} {date} [{repeat}]",
                "ping me to {text} {date}"],
        "heldout": ["nudge me to {text} {date} [{repeat}]"],
    },
    "cancel_reminder": {
        "seed": ["cancel the reminder to {text}", "delete my reminder to {text}"],
        "gen": ["remove the reminder about {text}", "stop reminding me to {text}",
                "i no longer need the reminder to {text}"],
        "heldout": ["drop the {text} reminder"],
    },
    "search_flights": {
        "seed": ["find [{nonstop}] flights from {origin} to {destination} {date}",
                 "flights {origin} to {destination} {date}"],
        "gen": ["i need to fly from {origin} to {destination} {date} [{nonstop}]",
                "search [{nonstop}] flights from {origin} to {destination} {date}",
                "any flights between {origin} and {destination} {date} [{nonstop}]"],
        "heldout": ["get me from {origin} to {destination} by plane {date}"],
    },
    "book_hotel": {
        "seed": ["book a hotel in {city} {check_in} for {nights} nights",
                 "hotel in {city} {check_in} for {nights} nights"],
        "gen": ["reserve a room in {city} {check_in} for {nights} nights",
                "i need a place to stay in {city} for {nights} nights starting {check_in}",
                "find me a hotel in {city} {check_in} , {nights} nights"],
        "heldout": ["accommodation in {city} for {nights} nights starting {check_in}"],
    },
}

NO_CALL_TEMPLATES = {
    "seed": ["thanks a lot", "hello there", "what can you do"],
    "gen": ["good morning", "tell me a joke", "i love {city}", "you are great", "how do you spell {city}"],
    "heldout": ["nice talking to you", "who made you"],
}

TWO_CALL_JOINERS = {"seed": ["{a} and {b}"], "gen": ["{a} , then {b}", "{a} and also {b}"],
                    "heldout": ["{a} plus {b}"]}

VALUES = {
    "city": {
        "train": ["paris", "london", "berlin", "tokyo", "madrid", "rome", "oslo", "vienna", "dublin",
                  "lisbon", "prague", "boston", "chicago", "seattle", "denver", "miami", "toronto",
                  "sydney", "cairo", "mumbai", "new york", "los angeles", "san francisco", "hong kong"],
        "heldout": ["helsinki", "warsaw", "austin", "lima", "nairobi", "buenos aires"],
    },
    "title": {
        "train": ["team meeting", "dentist", "gym", "project review", "lunch with sam", "standup",
                  "piano lesson", "doctor appointment", "book club", "budget review", "interview"],
        "heldout": ["yoga class", "parent teacher night", "code review"],
    },
    "text": {
        "train": ["call mom", "buy milk", "water the plants", "pay the bills", "walk the dog",
                  "take my pills", "send the report", "book tickets", "clean the kitchen", "renew passport"],
        "heldout": ["feed the cat", "charge the car", "file taxes"],
    },
}

_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Request:
    text: str
    calls: list[Call]
    skills: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """What a request should exercise: functions (0, 1 or 2) and phenomena."""

    functions: tuple[str, ...]
    phenomena: frozenset[str] = frozenset()


def _render_date(rng: random.Random, relative: bool) -> tuple[str, str, bool]:
    """(surface phrase, canonical value, is_relative)."""
    if relative:
        kind = rng.randrange(5)
        if kind == 0:
            return "today", "today", True
        if kind == 1:
            return "tomorrow", "tomorrow", True
        if kind == 2:
            return "the day after tomorrow", "+2d", True
        if kind == 3:
            n = rng.randint(3, 7)
            word = NUMBER_WORDS[n] if rng.random() < 0.5 else str(n)
            return f"in {word} days", f"+{n}d", True
        day = rng.choice(WEEKDAYS)
        return f"next {day}", f"next_{day}", True
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    canonical = f"{month:02d}-{day:02d}"
    style = rng.randrange(3)
    if style == 0:
        return f"on {MONTHS[month - 1]} {day}", canonical, False
    if style == 1:
        return f"on {day} {MONTHS[month - 1]}", canonical, False
    return f"on {month:02d}/{day:02d}", canonical, False


def _number(rng: random.Random) -> float:
    whole = rng.choice([rng.randint(1, 20), rng.randint(20, 999)])
    return whole + rng.choice([0.0, 0.0, 0.5, 0.25])


class _Filler:
    """Fills one template's slots for one function, remembering what it showed."""

    def __init__(self, rng: random.Random, fn: str, phenomena: frozenset[str], value_split: str):
        self.rng, self.fn, self.phenomena, self.value_split = rng, fn, phenomena, value_split
        self.arguments: dict = {}
        self.shown: set[str] = set()
        self._enum_pairs: dict[tuple, str] = {}

    def _want(self, phenomenon: str, p: float = 0.35) -> bool:
        return phenomenon in self.phenomena or self.rng.random() < p

    def _enum_word(self, value: str) -> str:
        words = ENUM_WORDS[value]
        if self._want("unit_words", 0.3) and len(words) > 1:
            self.shown.add("unit_words")
            return self.rng.choice(words[1:])
        return words[0]

    def slot(self, name: str) -> str:
        rng, spec = self.rng, FUNCTIONS[self.fn].arg(name)
        if spec is None:  # a string slot of a no-call template
            return rng.choice(VALUES["city"][self.value_split])
        if spec.type == STR:
            pool = "city" if name in ("city", "origin", "destination") else name
            choices = [v for v in VALUES[pool][self.value_split] if v not in self.arguments.values()]
            value = rng.choice(choices)
            self.arguments[name] = value
            return value
        if spec.type == NUMBER:
            value = _number(rng)
            self.arguments[name] = value
            return str(int(value)) if value.is_integer() else str(value)
        if spec.type == INT:
            value = rng.randint(2, 14 if name == "nights" else 7)
            self.arguments[name] = value
            return str(value)
        if spec.type == ENUM:
            taken = set(self.arguments.values())
            value = rng.choice([v for v in spec.enum if v not in taken])
            self.arguments[name] = value
            return self._enum_word(value)
        if spec.type == DATE:
            surface, value, relative = _render_date(rng, self._want("relative_dates", 0.5))
            if relative:
                self.shown.add("relative_dates")
            self.arguments[name] = value
            return surface
        if spec.type == TIME:
            value = f"{rng.randint(7, 20):02d}:{rng.choice(['00', '30'])}"
            self.arguments[name] = value
            return value
        if spec.type == BOOL:
            self.arguments[name] = True
            return rng.choice(BOOL_WORDS[name])
        raise ValueError(f"unknown argument type {spec.type!r}")

    def optional(self, segment: str) -> str:
        names = _SLOT.findall(segment)
        is_bool = any(FUNCTIONS[self.fn].arg(n) and FUNCTIONS[self.fn].arg(n).type == BOOL for n in names)
        if not self._want("booleans" if is_bool else "optional_args", 0.3):
            return ""
        if not is_bool:
            self.shown.add("optional_args")
        else:
            self.shown.add("booleans")
        return _SLOT.sub(lambda m: self.slot(m.group(1)), segment)


def _fill(rng: random.Random, fn: str, template: str, phenomena: frozenset[str], value_split: str):
    filler = _Filler(rng, fn, phenomena, value_split)
    # Optional segments first would change the order of values drawn; fill left to right.
    out, pos = [], 0
    for m in re.finditer(r"\[[^\]]*\]|\{\w+\}", template):
        out.append(template[pos:m.start()])
        token = m.group(0)
        out.append(filler.optional(token[1:-1]) if token.startswith("[") else filler.slot(token[1:-1]))
        pos = m.end()
    out.append(template[pos:])
    text = " ".join("".join(out).split())
    return text, {"name": fn, "arguments": filler.arguments}, filler.shown


def _templates(table: dict[str, list[str]], phrasing_sets: tuple[str, ...]) -> list[str]:
    return [t for s in phrasing_sets for t in table.get(s, [])]


def make_request(rng: random.Random, spec: Spec, *, phrasing_sets: tuple[str, ...] = ("seed", "gen"),
                 value_split: str = "train") -> Request:
    """Draw one request and its true calls for `spec`."""
    if not spec.functions:
        template = rng.choice(_templates(NO_CALL_TEMPLATES, phrasing_sets))
        text = _SLOT.sub(lambda m: rng.choice(VALUES["city"][value_split]), template)
        return Request(text, [], ("no_call",))
    texts, calls, shown = [], [], set()
    for fn in spec.functions:
        template = rng.choice(_templates(TEMPLATES[fn], phrasing_sets))
        text, call, seen = _fill(rng, fn, template, spec.phenomena, value_split)
        texts.append(text)
        calls.append(call)
        shown |= seen
    if len(texts) == 2:
        joiner = rng.choice(_templates(TWO_CALL_JOINERS, phrasing_sets))
        text = joiner.format(a=texts[0], b=texts[1])
        shown.add("two_calls")
    else:
        text = texts[0]
    families = {FUNCTIONS[fn].family for fn in spec.functions}
    return Request(text, calls, tuple(sorted(families | shown)))


def _supports(fn: str, phenomenon: str) -> bool:
    types = {a.type for a in FUNCTIONS[fn].args}
    optional = {a.type for a in FUNCTIONS[fn].args if not a.required}
    return {
        "relative_dates": DATE in types,
        "unit_words": ENUM in types,
        "optional_args": bool(optional - {BOOL}),
        "booleans": BOOL in optional,
    }.get(phenomenon, True)


def spec_for_skill(rng: random.Random, skill: str) -> Spec:
    """A spec that exercises `skill`: the unit the plan and the seed set sample in."""
    names = sorted(FUNCTIONS)
    if skill in FAMILIES:
        return Spec((rng.choice([n for n in names if FUNCTIONS[n].family == skill]),))
    if skill == "no_call":
        return Spec(())
    if skill == "two_calls":
        first = rng.choice(names)
        second = rng.choice([n for n in names if n != first])
        return Spec((first, second), frozenset({"two_calls"}))
    return Spec((rng.choice([n for n in names if _supports(n, skill)]),), frozenset({skill}))
