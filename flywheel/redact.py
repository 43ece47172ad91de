"""Redaction of people's data in logged requests (`traffic.redact`).

Requests a deployed model received carry e-mail addresses, phone, card and bank account
numbers. A `Redactor` replaces each match with a typed placeholder (`<EMAIL>`, `<PHONE>`,
`<CARD>`, `<IBAN>`, or `<KIND>` for a pattern of your own) where the request is read, so
the text that leaves the machine for a teacher or a judge, and everything written
afterwards (data/, the DVC cache and remote, MLflow), holds the placeholder, never the
value. It counts matches per kind; the counts, never the values, are reported.

The shipped patterns are deliberately broad (a false match costs a word of a request;
a miss leaks a person's data): an e-mail address; a phone number of 7 to 15 digits with
an optional `+` and separators (space, dash, parentheses), or a bare run of 9 digits or
more (a bare 1500000 is an amount); a card-like number of 13 to 19 digits, grouped or not
(whether or not it passes the Luhn check: a mistyped card number is still one); an
IBAN-like number (two letters, two check
digits, 11 to 30 letters and digits, optionally in groups of four). Names of people need
a pattern of your own (a list of the names your logs hold, say): no regular expression
finds them all.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

DEFAULT_PATTERNS: dict[str, str] = {
    "email": r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    "card": r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)",
    "phone": r"(?<![\w+])\+?\(?\d[\d ()-]{5,}\d(?![\w.,]\d|\w)",
}
ORDER = ("email", "iban", "card", "phone")  # most specific first: a card number is also a run of digits


def _keep(kind: str, text: str) -> bool:
    """Does a match of `kind` stand for the thing (not just any digits)?"""
    digits = re.sub(r"\D", "", text)
    if kind == "card":
        return 13 <= len(digits) <= 19
    if kind == "phone":  # a bare run of digits is a phone number from 9 digits on (1500000 is an amount)
        bare = text.strip().isdigit()
        return 7 <= len(digits) <= 15 and (not bare or len(digits) >= 9)
    return True


@dataclass
class Redactor:
    """Typed placeholders for every match of `patterns` (kind -> regular expression)."""
    patterns: dict[str, str]
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        kinds = [k for k in ORDER if k in self.patterns] + sorted(k for k in self.patterns if k not in ORDER)
        self._compiled = [(k, re.compile(self.patterns[k])) for k in kinds]

    def __call__(self, text: str) -> str:
        for kind, pattern in self._compiled:
            placeholder = f"<{kind.upper()}>"

            def sub(m: re.Match, kind=kind, placeholder=placeholder) -> str:
                if not _keep(kind, m.group(0)):
                    return m.group(0)
                self.counts[kind] += 1
                return placeholder

            text = pattern.sub(sub, text)
        return text

    def report(self) -> dict[str, int]:
        return {k: int(self.counts.get(k, 0)) for k, _ in self._compiled}


_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)>")


def placeholders(texts) -> dict[str, int]:
    """How many placeholders of each kind `texts` hold: what was redacted in them."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(m.lower() for m in _PLACEHOLDER.findall(text))
    return dict(sorted(counts.items()))


def from_config(cfg) -> Redactor:
    """The redactor of a `traffic.redact` section (config.RedactConfig)."""
    patterns = dict(DEFAULT_PATTERNS) if cfg.default else {}
    patterns.update(cfg.patterns)
    return Redactor(patterns)
