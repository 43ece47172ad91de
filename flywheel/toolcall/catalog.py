"""The function catalog of the `toolcall` domain: what a valid call looks like.

Everything else in the domain (the teacher's requests, the verifier's checks, the
scorer's normalisation) reads the argument types from here, so a function is
described once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Argument types. `date` values are canonical strings: "MM-DD" for absolute dates,
# "today", "tomorrow", "+Nd" or "next_<weekday>" for relative ones.
STR, NUMBER, INT, ENUM, DATE, TIME, BOOL = "str", "number", "int", "enum", "date", "time", "bool"

CURRENCIES = ("usd", "eur", "gbp", "jpy", "chf")
LENGTH_UNITS = ("km", "mile", "m", "ft")
WEIGHT_UNITS = ("kg", "lb", "g", "oz")
TEMPERATURE_UNITS = ("celsius", "fahrenheit")


@dataclass(frozen=True)
class Arg:
    name: str
    type: str
    required: bool = True
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class Function:
    name: str
    family: str
    args: tuple[Arg, ...] = field(default_factory=tuple)

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)


def _fn(name: str, family: str, *args: Arg) -> Function:
    return Function(name, family, tuple(args))


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        _fn("get_weather", "weather", Arg("city", STR), Arg("date", DATE, False),
            Arg("unit", ENUM, False, TEMPERATURE_UNITS)),
        _fn("get_forecast", "weather", Arg("city", STR), Arg("days", INT)),
        _fn("create_event", "calendar", Arg("title", STR), Arg("date", DATE),
            Arg("time", TIME, False), Arg("all_day", BOOL, False)),
        _fn("list_events", "calendar", Arg("date", DATE)),
        _fn("convert_currency", "currency", Arg("amount", NUMBER),
            Arg("from_currency", ENUM, True, CURRENCIES), Arg("to_currency", ENUM, True, CURRENCIES)),
        _fn("get_exchange_rate", "currency", Arg("base", ENUM, True, CURRENCIES),
            Arg("target", ENUM, True, CURRENCIES)),
        _fn("convert_length", "units", Arg("value", NUMBER),
            Arg("from_unit", ENUM, True, LENGTH_UNITS), Arg("to_unit", ENUM, True, LENGTH_UNITS)),
        _fn("convert_weight", "units", Arg("value", NUMBER),
            Arg("from_unit", ENUM, True, WEIGHT_UNITS), Arg("to_unit", ENUM, True, WEIGHT_UNITS)),
        _fn("set_reminder", "reminders", Arg("text", STR), Arg("date", DATE),
            Arg("repeat", BOOL, False)),
        _fn("cancel_reminder", "reminders", Arg("text", STR)),
        _fn("search_flights", "travel", Arg("origin", STR), Arg("destination", STR),
            Arg("date", DATE), Arg("nonstop", BOOL, False)),
        _fn("book_hotel", "travel", Arg("city", STR), Arg("check_in", DATE), Arg("nights", INT)),
    )
}

FAMILIES = tuple(sorted({f.family for f in FUNCTIONS.values()}))
# Phenomena that cut across families. Together with the families they are the skills
# a row is tagged with, and the unit the failure profile and the expansion plan count in.
PHENOMENA = ("relative_dates", "unit_words", "optional_args", "booleans", "two_calls", "no_call")
SKILLS = FAMILIES + PHENOMENA

# Surface words for enum values. The first word is the canonical value itself; the
# others are the "unit words" a request may use instead (skill `unit_words`).
ENUM_WORDS: dict[str, tuple[str, ...]] = {
    "celsius": ("celsius", "metric", "centigrade", "metric units", "c"),
    "fahrenheit": ("fahrenheit", "imperial", "imperial units", "f"),
    "usd": ("usd", "dollars", "bucks", "us dollars", "dollar"),
    "eur": ("eur", "euros", "euro"),
    "gbp": ("gbp", "pounds sterling", "quid", "pounds", "british pounds"),
    "jpy": ("jpy", "yen", "japanese yen"),
    "chf": ("chf", "swiss francs", "francs", "swiss franc"),
    "km": ("km", "kilometers", "kilometres", "kms"),
    "mile": ("mile", "miles", "mi"),
    "m": ("m", "meters", "metres", "meter"),
    "ft": ("ft", "feet", "foot"),
    "kg": ("kg", "kilograms", "kilos", "kilo"),
    "lb": ("lb", "pounds", "lbs"),
    "g": ("g", "grams", "gram"),
    "oz": ("oz", "ounces", "ounce"),
}

# Words that switch a boolean argument on (skill `booleans`).
BOOL_WORDS: dict[str, tuple[str, ...]] = {
    "all_day": ("all day", "the whole day", "all-day", "whole day"),
    "repeat": ("every day", "daily", "each day", "repeating", "recurring"),
    "nonstop": ("nonstop", "direct", "non-stop", "no layovers"),
}

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven")


def describe() -> list[dict]:
    """The catalog as plain data, for prompt templates."""
    return [{"name": f.name, "args": [{"name": a.name, "type": a.type, "required": a.required, "enum": list(a.enum)}
                                      for a in f.args]} for f in FUNCTIONS.values()]


_JSON_TYPES = {STR: "string", NUMBER: "number", INT: "integer", ENUM: "string", DATE: "string", TIME: "string",
               BOOL: "boolean"}
_FORMATS = {DATE: "MM-DD, or today, tomorrow, +Nd, next_<weekday>", TIME: "HH:MM, 24-hour"}


def tools() -> list[dict]:
    """The catalog as OpenAI-style tools (JSON schema), for a chat template's `tools`."""
    out = []
    for f in FUNCTIONS.values():
        props = {}
        for a in f.args:
            prop = {"type": _JSON_TYPES[a.type]}
            if a.enum:
                prop["enum"] = list(a.enum)
            if a.type in _FORMATS:
                prop["description"] = _FORMATS[a.type]
            props[a.name] = prop
        out.append({"type": "function", "function": {
            "name": f.name, "parameters": {"type": "object", "properties": props,
                                           "required": [a.name for a in f.args if a.required]}}})
    return out
