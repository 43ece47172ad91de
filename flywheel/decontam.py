"""Decontamination: a training request that is an evaluation request in other words is
refused, not only an exact copy.

A request is reduced to its content words (lower case, punctuation and politeness or
filler words dropped: "Hey! Could you check the weather in Oslo, pls?" -> "check the
weather in oslo"), then cut into word 3-grams, as open LLM data pipelines compare texts
by n-gram overlap. A training request is a near-duplicate of an evaluation request when
it contains at least THRESHOLD of that request's 3-grams (requests of fewer than three
content words must match exactly). What the threshold catches and what it wrongly
refuses was measured (docs/decontamination.md): casing, punctuation, filler and
contractions never move a request below it, and a request that changes one value of a
typical request does.
"""

from __future__ import annotations

import re
from collections import defaultdict

N = 3
THRESHOLD = 0.9
FILLER = frozenset("""a an please pls plz thanks thank thx you u hey hi hello ok okay so um uh yo could can would
kindly quick question just me for if cheers asap morning there excuse alright""".split())
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_CONTRACTED = {"what's": "what is", "how's": "how is", "i'm": "i am", "i'd": "i would", "it's": "it is",
               "don't": "do not", "i'll": "i will", "gonna": "going to", "let's": "let us"}


def content_words(text: str) -> list[str]:
    """The words that carry a request's meaning; a request of filler alone ("hi there!")
    is one token of all its words, so greetings stay distinct from each other."""
    raw = _WORD.findall(text.lower().replace("’", "'"))
    words = []
    for w in raw:
        words += _CONTRACTED.get(w, w).split()
    kept = [w for w in words if w not in FILLER]
    return kept or ["<" + " ".join(raw) + ">"]


def grams(words: list[str]) -> set[tuple[str, ...]]:
    if len(words) < N:
        return {tuple(words)}
    return {tuple(words[i: i + N]) for i in range(len(words) - N + 1)}


class NearDuplicates:
    """An index of evaluation requests; `match(text)` is the index of the evaluation
    request `text` near-duplicates, or None."""

    def __init__(self, eval_texts: list[str], *, threshold: float = THRESHOLD):
        self.threshold = threshold
        self.texts = list(eval_texts)
        self.sizes = []
        self.index: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, text in enumerate(self.texts):
            g = grams(content_words(text))
            self.sizes.append(len(g))
            for gram in g:
                self.index[gram].append(i)

    def match(self, text: str) -> int | None:
        hits: dict[int, int] = defaultdict(int)
        for gram in grams(content_words(text)):
            for i in self.index.get(gram, ()):
                hits[i] += 1
        best = None
        for i, n in hits.items():
            if n / self.sizes[i] >= self.threshold and (best is None or n / self.sizes[i] > hits[best] / self.sizes[best]):
                best = i
        return best
