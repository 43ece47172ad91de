"""When two requests are the same, or nearly the same: the one rule behind deduplication,
the generate gate, and decontamination (a training request that is an evaluation request
in other words is refused, not only an exact copy).

The same: equal after case and runs of whitespace (`request_key`). Nearly the same: a
request is reduced to its content words (lower case, punctuation and politeness or
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
from typing import Iterable

import numpy as np
import pandas as pd

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


def request_key(text: str) -> str:
    """What makes two requests the same for dedup and decontamination: case and runs of
    whitespace do not count."""
    return " ".join(text.lower().split())


def request_keys(requests: pd.Series) -> pd.Series:
    """`request_key` of every row (a plain loop over a list: faster than pandas' string
    methods here)."""
    return pd.Series([request_key(t) for t in requests.tolist()], index=requests.index, dtype=object)


def duplicated_requests(requests: pd.Series) -> pd.Series:
    """True for every row whose `request_key` an earlier row already has. Exact, and linear
    in practice: rows are first compared by a 64-bit hash of their key (a compact table
    that stays in cache), then only rows whose hash repeats are compared by key."""
    keys = [request_key(t) for t in requests.tolist()]
    hashes = pd.Series(np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys)))
    maybe = np.flatnonzero(hashes.duplicated(keep=False).to_numpy())
    out = np.zeros(len(keys), dtype=bool)
    if len(maybe):
        out[maybe] = pd.Series([keys[i] for i in maybe], dtype=object).duplicated().to_numpy()
    return pd.Series(out, index=requests.index)


class EvalRequests:
    """The evaluation requests, and the rule every stage applies to them: a request equal
    to one of them (by `request_key`) or a near-duplicate of one (`NearDuplicates`) must
    not reach training, a teacher or a tokenizer."""

    def __init__(self, requests: Iterable[str]):
        texts = sorted(set(requests))
        self.keys = {request_key(t): t for t in texts}
        self.near = NearDuplicates(texts)

    def match(self, text: str) -> str | None:
        """The evaluation request `text` equals or nearly duplicates, or None."""
        same = self.keys.get(request_key(text))
        if same is not None:
            return same
        i = self.near.match(text)
        return None if i is None else self.near.texts[i]

    def clean(self, texts: Iterable[str]) -> list[bool]:
        """Per text: True when it matches no evaluation request."""
        return [self.match(t) is None for t in texts]


def check_decontaminated(train: pd.DataFrame, evals: pd.DataFrame, where: str) -> None:
    """A training request equal to an evaluation request, or a near-duplicate of one, is
    an error: decontamination is checked, not assumed (`prepare` on the seed set,
    `compose` on every training set)."""
    from flywheel.store import DataError

    index = EvalRequests(evals["request"].tolist())
    for text, row in zip(train["request"].tolist(), train["id"].tolist()):
        hit = index.match(text)
        if hit is not None:
            hits = sum(index.match(t) is not None for t in train["request"].tolist())
            how = "equal" if request_key(hit) == request_key(text) else \
                f"near-duplicate (word 3-gram containment >= {THRESHOLD})"
            raise DataError(f"{where}: {hits} training request(s) equal or nearly duplicate evaluation requests, "
                            f"first id {row} ({how}): {text!r} ~ {hit!r}")
