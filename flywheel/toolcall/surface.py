"""How argument values are written in a request, both ways: the request generator renders
a value in one of several notations, and the verifier reads every value a request's
words can mean. Keeping both in one module is what makes the verifier's grounding agree
with the teacher.

Conventions (the catalog's canonical values, flywheel/toolcall/catalog.py):
- dates: "MM-DD" for a day of the year; "today" (also "tonight"), "tomorrow" (also
  "tmrw"), "+Nd" for N = 2..9 days ahead ("the day after tomorrow", "in 3 days", "in a
  week"), "next_<weekday>" for the coming weekday ("next friday", "on friday", "this
  friday", "friday"). "12/05" is month/day.
- times: "HH:MM", 24-hour ("3pm", "3:30 pm", "15:00", "noon", "at 9" = 09:00).
- numbers: digits with or without thousands commas ("1,200"), decimals, and number words
  up to the millions ("twelve", "twenty five", "a hundred", "two thousand").

`read` functions take normalised text (lower case, punctuation spaced off: `normalise`).
"""

from __future__ import annotations

import random
import re

from flywheel.toolcall.catalog import MONTHS, WEEKDAYS

MONTH_ABBR = tuple(m[:3] for m in MONTHS)
UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
ORDINAL = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}

_PUNCT = re.compile(r"([?!;\"“”()]|(?<!\d),|,(?!\d{3})|\.(?!\d)|:(?!\d))")
_HYPHEN = re.compile(r"(?<=[^\W\d_])-(?=[^\W\d_])")
_UNIT_SUFFIX = re.compile(r"(\d)(kg|km|g|m|ft|lbs?|oz|mi)\b")


def normalise(text: str) -> str:
    """Lower case, with punctuation that is not part of a number or time spaced off, and
    a unit written onto its number ("200g") split from it."""
    text = _UNIT_SUFFIX.sub(r"\1 \2", text.lower().replace("’", "'"))
    text = _HYPHEN.sub(" ", text)  # "seven-day", "all-day", "non-stop"
    return " ".join(_PUNCT.sub(r" \1 ", text).split())


# -- numbers -----------------------------------------------------------------------------

def number_words(n: int) -> str:
    """English words for 0 <= n < 10**9 ("twenty five", "a hundred", "two thousand")."""
    if n < 20:
        return UNITS[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + UNITS[n % 10])
    for word, scale in (("million", 1_000_000), ("thousand", 1000), ("hundred", 100)):
        if n >= scale:
            head, rest = divmod(n, scale)
            lead = "a" if head == 1 else number_words(head)
            return f"{lead} {word}" + ("" if rest == 0 else " " + number_words(rest))
    raise ValueError(n)


def render_number(rng: random.Random, value: float) -> str:
    if not float(value).is_integer():
        return f"{value:g}"
    n = int(value)
    style = rng.random()
    if n <= 99 and style < 0.3 or (n % 100 == 0 and n < 1000 or n % 1000 == 0 and n < 100_000) and style < 0.15:
        return number_words(n)
    if n >= 1000 and style < 0.6:
        return f"{n:,}"
    return str(n)


_WORD_VALUES = {w: i for i, w in enumerate(UNITS)} | {w: 10 * i for i, w in enumerate(TENS) if w}
_NUMBER = re.compile(r"(?<![\w/:.,-])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w/:,])|(?<![\w/:.,-])\d+(?:\.\d+)?(?![\w/:])")


def numbers_in(text: str) -> list[float]:
    """Every number the words of normalised `text` write, digits and words."""
    found = [float(m.group(0).replace(",", "")) for m in _NUMBER.finditer(text)]
    words = text.split()
    i = 0
    while i < len(words):
        total, current, used = 0, 0, 0
        j = i
        while j < len(words):
            w = words[j]
            if w in ("a", "one", "next") and j + 1 < len(words) and words[j + 1] == "week" and used == 0:
                found.append(7.0)  # "for a week", "the next week": seven days or nights
                break
            if w in _WORD_VALUES:
                current += _WORD_VALUES[w]
            elif w == "a" and j + 1 < len(words) and words[j + 1] in SCALES and used == 0:
                current += 1
            elif w in SCALES and not current and not used:
                current = SCALES[w]  # "hundred euros"
            elif w in SCALES and (current or used):
                if w == "hundred":
                    current *= 100
                else:
                    total += current * SCALES[w]
                    current = 0
            elif w == "and" and used and j + 1 < len(words) and words[j + 1] in _WORD_VALUES:
                pass
            else:
                break
            used += 1
            j += 1
        if used and not (used == 1 and words[i] == "a"):
            found.append(float(total + current))
            i = j
        else:
            i += 1
    return found


# -- dates -------------------------------------------------------------------------------

def render_date(rng: random.Random, value: str) -> str:
    """A phrase for a canonical date, with its preposition where one is needed."""
    if value == "today":
        return rng.choice(["today", "today", "tonight", "this evening"])
    if value == "tomorrow":
        return rng.choice(["tomorrow", "tomorrow", "tomorrow", "tmrw", "tomorrow morning"])
    if value.startswith("+"):
        n = int(value[1:-1])
        if n == 2 and rng.random() < 0.5:
            return "the day after tomorrow"
        if n == 7 and rng.random() < 0.5:
            return "in a week"
        return f"in {UNITS[n] if rng.random() < 0.4 else n} days"
    if value.startswith("next_"):
        day = value[5:]
        return rng.choice([f"next {day}", f"on {day}", f"this {day}", day, f"next {day}"])
    month, day = int(value[:2]), int(value[3:])
    name = MONTHS[month - 1] if rng.random() < 0.7 else MONTH_ABBR[month - 1]
    nth = f"{day}{ORDINAL.get(day, 'th')}"
    style = rng.randrange(7)
    phrase = [f"{name} {day}", f"{name} {nth}", f"{day} {name}", f"the {nth} of {name}",
              f"{month:02d}/{day:02d}", f"{month}/{day}", f"{nth} {name}"][style]
    return phrase if rng.random() < 0.3 else f"on {phrase}"


_MONTH = "|".join(MONTHS + MONTH_ABBR)
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"


def _month(word: str) -> int:
    return (MONTHS.index(word) if word in MONTHS else MONTH_ABBR.index(word[:3])) + 1


def _md(month: int, day: int) -> str | None:
    return f"{month:02d}-{day:02d}" if 1 <= month <= 12 and 1 <= day <= 31 else None


def _days(word: str) -> int:
    return int(word) if word.isdigit() else UNITS.index(word)


_DATE_PATTERNS = [
    (r"\bthe day after tomorrow\b", lambda m: "+2d"),
    (rf"\bin ({'|'.join(UNITS[2:10])}|[2-9]) days\b", lambda m: f"+{_days(m.group(1))}d"),
    (r"\bin a week\b", lambda m: "+7d"),
    (r"\b(today|tonight|this evening)\b", lambda m: "today"),
    (r"\b(tomorrow|tmrw|tmr)\b", lambda m: "tomorrow"),
    (rf"\b(?:next |on |this )?({'|'.join(WEEKDAYS)})\b", lambda m: f"next_{m.group(1)}"),
    (rf"\bthe {_DAY} of ({_MONTH})\b", lambda m: _md(_month(m.group(2)), int(m.group(1)))),
    (rf"\b({_MONTH})\.? {_DAY}\b", lambda m: _md(_month(m.group(1)), int(m.group(2)))),
    (rf"\b{_DAY} ({_MONTH})\b", lambda m: _md(_month(m.group(2)), int(m.group(1)))),
    (r"(?<![\d.,])(\d{1,2})/(\d{1,2})(?![\d/])", lambda m: _md(int(m.group(1)), int(m.group(2)))),
]


def dates_in(text: str) -> list[str]:
    """Every canonical date the words of normalised `text` can mean, in order."""
    found: list[tuple[int, str]] = []
    rest = text
    for pattern, canon in _DATE_PATTERNS:
        for m in re.finditer(pattern, rest):
            value = canon(m)
            if value:
                found.append((m.start(), value))
        # Blank what matched so "tomorrow" inside "the day after tomorrow" is not read twice.
        rest = re.sub(pattern, lambda m: " " * len(m.group(0)), rest)
    return [value for _, value in sorted(found)]


# -- times -------------------------------------------------------------------------------

def render_time(rng: random.Random, value: str) -> str:
    hour, minute = int(value[:2]), int(value[3:])
    if value == "12:00" and rng.random() < 0.4:
        return "at noon"
    h12 = hour % 12 or 12
    half = "pm" if hour >= 12 else "am"
    mins = f":{minute:02d}" if minute or rng.random() < 0.2 else ""
    style = rng.randrange(5)
    if style == 0:
        return f"at {value}"
    if style == 1 and 7 <= hour <= 11 and not minute:
        return f"at {hour}"
    space = " " if rng.random() < 0.4 else ""
    return f"at {h12}{mins}{space}{half}"


_TIMES = [
    (r"\bnoon\b", lambda m: "12:00"),
    (r"\b(\d{1,2})(?::(\d{2}))? ?(am|pm|a\.m\.|p\.m\.)", lambda m: _hm(int(m.group(1)) % 12 + (
        12 if m.group(3).startswith("p") else 0), int(m.group(2) or 0))),
    (r"(?<![\d/.,])(\d{1,2}):(\d{2})(?!\d)", lambda m: _hm(int(m.group(1)), int(m.group(2)))),
    (r"\bat (\d{1,2})(?![\d:/.,])(?! ?(?:am|pm|days?|nights?))", lambda m: _hm(int(m.group(1)), 0)),
]


def _hm(hour: int, minute: int) -> str | None:
    return f"{hour:02d}:{minute:02d}" if 0 <= hour <= 23 and 0 <= minute <= 59 else None


def times_in(text: str) -> list[str]:
    """Every "HH:MM" the words of normalised `text` can mean."""
    found, rest = [], text
    for pattern, canon in _TIMES:
        for m in re.finditer(pattern, rest):
            value = canon(m)
            if value:
                found.append(value)
        rest = re.sub(pattern, lambda m: " " * len(m.group(0)), rest)
    return found
