"""What a request is made of, read back from its text and its calls: the composition
factors the failure analysis counts (tasks/probe.py) and that the `user` split is tagged
with (tasks/evaluate.py), by the same patterns for a generated and a hand-written request.

A factor is `kind:value`. The kinds:
- `calls`: how many calls the label makes (0, 1, 2);
- `length`: words in the request, bucketed (`short` up to 6, `medium` up to 12, `long`
  up to 20, `very_long` beyond);
- `case`: `lower`, `upper`, `capitalised` (first letter only) or `mixed`;
- `dress`: a greeting in front, a polite ask in front, a polite suffix, a question mark;
- per argument type, the notation its value is written in: `date` (`word`, `weekday`,
  `in_n_days`, `in_words_days`, `phrase`, `month_day`, `month_ordinal`, `day_month`,
  `the_nth_of`, `ordinal_month`, `numeric`, plus `month_abbr` where the month is
  abbreviated), `time` (`noon`, `24h`, `12h`, `bare_hour`), `number` and `int`
  (`digits`, `grouped`, `decimal`, `words`), `enum` (`canonical` or `synonym`), `string`
  (`quoted`, `function_words`: a value with words like "the", "to", "with" in it,
  `multiword`, `one_word`);
- `notation:unread` for a value whose notation none of the patterns finds (a hand-written
  request may write it in a way the generator never does), or a label's value not of its
  argument's type (a teacher's error: "24868.0 units" for a number).

Typos and contractions are not read back: they leave no pattern to find.
"""

from __future__ import annotations

import re

from flywheel.domain import length_factor
from flywheel.toolcall import calls
from flywheel.toolcall.catalog import BOOL, DATE, ENUM, INT, MONTHS, NUMBER, STR, TIME, Catalog, scalars
from flywheel.toolcall.phrasings import ASKS, GREETINGS, SUFFIXES
from flywheel.toolcall.surface import MONTH_ABBR, number_words

FUNCTION_WORDS = frozenset({"the", "a", "an", "to", "with", "for", "of", "at", "on", "in", "and", "my", "from"})


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'/:.,-]+", text.lower())


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(phrase)}(?![\w])", text) is not None


def _date(text: str, value: str) -> list[str]:
    if value in ("today", "tomorrow"):
        return ["word"]
    if value.startswith("+"):
        n = int(value[1:-1])
        if _has(text, "day after tomorrow") or _has(text, "in a week"):
            return ["phrase"]
        return ["in_n_days"] if _has(text, f"in {n} days") else ["in_words_days"] if _has(
            text, f"in {number_words(n)} days") else []
    if value.startswith("next_"):
        return ["weekday"] if _has(text, value[5:]) else []
    month, day = int(value[:2]), int(value[3:])
    if re.search(rf"(?<![\d/]){month:02d}/{day:02d}(?![\d/])|(?<![\d/]){month}/{day}(?![\d/])", text):
        return ["numeric"]
    for name, abbr in ((MONTHS[month - 1], False), (MONTH_ABBR[month - 1], True)):
        nth = rf"{day}(?:st|nd|rd|th)"
        for style, pattern in (("the_nth_of", rf"the {nth} of {name}"), ("month_ordinal", rf"{name} {nth}"),
                               ("ordinal_month", rf"{nth} {name}"), ("month_day", rf"{name} {day}"),
                               ("day_month", rf"{day} {name}")):
            if re.search(rf"(?<![\w]){pattern}(?![\w])", text):
                return [style] + (["month_abbr"] if abbr else [])
    return []


def _time(text: str, value: str) -> list[str]:
    hour, minute = int(value[:2]), int(value[3:])
    if value == "12:00" and _has(text, "noon"):
        return ["noon"]
    if _has(text, value) or _has(text, f"{hour}:{minute:02d}") and hour >= 13:
        return ["24h"]
    h12 = hour % 12 or 12
    if re.search(rf"(?<![\d:]){h12}(?::{minute:02d})? ?(?:am|pm|a\.m\.|p\.m\.)", text):
        return ["12h"]
    return ["bare_hour"] if re.search(rf"\bat {hour}(?![\d:])", text) else []


def _number(text: str, value) -> list[str]:
    value = float(value)
    if not value.is_integer():
        return ["decimal"] if f"{value:g}" in text else []
    n = int(value)
    if n >= 1000 and f"{n:,}" in text:
        return ["grouped"]
    if re.search(rf"(?<![\d,.]){n}(?![\d,])", text):
        return ["digits"]
    return ["words"] if _has(text, number_words(n)) else []


def _enum(text: str, value: str, catalog: Catalog) -> list[str]:
    words = catalog.words_for(value)
    if any(_has(text, w) for w in words[1:]) and not _has(text, words[0]):
        return ["synonym"]
    return ["canonical"] if _has(text, words[0]) else []


def _string(text: str, value: str) -> list[str]:
    words = str(value).lower().split()
    out = ["quoted"] if re.search(rf"[\"“]{re.escape(str(value).lower())}[\"”]", text) else []
    if FUNCTION_WORDS & set(words[1:]):
        out.append("function_words")
    return out + ["multiword" if len(words) > 1 else "one_word"]


READERS = {DATE: ("date", _date), TIME: ("time", _time), NUMBER: ("number", _number), INT: ("int", _number),
           ENUM: ("enum", _enum), STR: ("string", _string)}


def factors(request: str, label: str, catalog: Catalog) -> list[str]:
    """The request's factors, sorted, each once (argument types from `catalog`). A label
    that does not parse gives only the factors of the text."""
    text = " ".join(request.lower().split())
    words = _words(text)
    out = {length_factor(len(words))}
    letters = [c for c in request if c.isalpha()]
    out.add("case:" + ("upper" if letters and all(c.isupper() for c in letters) else
                       "lower" if not any(c.isupper() for c in letters) else
                       "capitalised" if letters[0].isupper() and not any(c.isupper() for c in letters[1:]) else
                       "mixed"))
    if any(text.startswith(g) and not text[len(g):len(g) + 1].isalpha() for g in GREETINGS):
        out.add("dress:greeting")
    if any(_has(text[:40], a) for a in ASKS):
        out.add("dress:ask")
    if any(_has(text[-30:], s) for s in SUFFIXES):
        out.add("dress:suffix")
    if text.rstrip().endswith("?"):
        out.add("dress:question")
    try:
        made = calls.loads(label)
    except (ValueError, TypeError):
        return sorted(out)
    out.add(f"calls:{len(made)}")
    for call in made:
        fn = catalog.functions.get(call.get("name"))
        pairs = [leaf for name, v in (call.get("arguments") or {}).items()
                 if fn is not None and fn.arg(name) is not None for leaf in scalars(fn.arg(name), v)]
        for arg, value in pairs:
            if arg.type == BOOL or arg.type not in READERS:
                continue
            kind, read = READERS[arg.type]
            try:
                found = read(text, value, catalog) if arg.type == ENUM else read(text, value)
            except (AttributeError, IndexError, TypeError, ValueError):  # a label's value of the wrong shape
                found = []
            out |= {f"{kind}:{f}" for f in found} if found else {"notation:unread"}
    return sorted(out)
