"""The built-in student's text <-> token ids: requests and answers to ids and back,
with copy markers for words the vocabulary lacks (flywheel/vocab.py makes the
tokenizers).

Text layout: `<request tokens> [SEP] <answer tokens> [EOS]`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tokenizers import Tokenizer

from flywheel.vocab import COPY_MARKERS, EOS, PAD, SEP, UNK

TOKENIZER, TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"

_NUMERAL = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


def _number(word: str) -> float | None:
    return float(word.replace(",", "")) if _NUMERAL.fullmatch(word) else None


class Codec:
    """Requests and answers to token ids and back. The special-token ids are the
    tokenizer's own (its [SEP], [EOS] and [PAD]); a tokenizer without them is refused.

    With copy markers in the vocabulary (vocab.train_copy_tokenizer, a case-folded word
    vocabulary), a word reads as its lower-case token when the vocabulary has that, and
    otherwise as `[C0]`, `[C1]`, ... in order of first appearance among the request's
    unknown words. An answer's marker decodes to that word of the request, character for
    character: a value the student never saw is copied, not guessed. Known words are
    case-folded (what a call means does not depend on case, and the scorer ignores it)."""

    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        self.sep, self.eos, self.pad = (tokenizer.token_to_id(t) for t in (SEP, EOS, PAD))
        if None in (self.sep, self.eos, self.pad):
            raise ValueError(f"the student's tokenizer needs the special tokens {SEP}, {EOS} and {PAD}")
        self.markers = [i for i in (tokenizer.token_to_id(m) for m in COPY_MARKERS) if i is not None]
        self.unk = tokenizer.token_to_id(UNK)

    def _words(self, text: str) -> list[str]:
        return [w for w, _ in self.tok.pre_tokenizer.pre_tokenize_str(text)]

    def _id(self, word: str) -> int | None:
        """A word's id; with markers, a word the vocabulary has only in lower case reads as that."""
        i = self.tok.token_to_id(word)
        return i if i is not None or not self.markers else self.tok.token_to_id(word.lower())

    def unknown(self, request: str) -> list[str]:
        """The request's words the vocabulary lacks, distinct, in order (what markers point to)."""
        if not self.markers:
            return []
        return list(dict.fromkeys(w for w in self._words(request) if self._id(w) is None))

    def _encode(self, text: str, unknown: list[str]) -> list[int]:
        if not self.markers:
            return self.tok.encode(text).ids
        index = {w: i for i, w in enumerate(unknown[: len(self.markers)])}
        numeric = {_number(w): i for w, i in index.items() if _number(w) is not None}
        out = []
        for w in self._words(text):
            i = self._id(w)
            if i is None:  # a copied word, or a number the request writes another way ("1,200" for 1200)
                k = index.get(w, numeric.get(_number(w)))
                i = self.markers[k] if k is not None else self.unk
            out.append(i)
        return out

    def save(self, folder: Path) -> None:
        """tokenizer.json and the tokenizer_config.json that lets transformers'
        AutoTokenizer load it (as a fast tokenizer with these special tokens)."""
        self.tok.save(str(folder / TOKENIZER))
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": PAD, "unk_token": UNK, "sep_token": SEP,
                  "eos_token": EOS}
        (folder / TOKENIZER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")

    def prompt(self, request: str) -> list[int]:
        return self._encode(request, self.unknown(request)) + [self.sep]

    def target(self, answer: str, request: str = "") -> list[int]:
        """The answer's ids; with markers, a word copied from `request` is its marker."""
        return self._encode(answer, self.unknown(request)) + [self.eos]

    def pair(self, request: str, answer: str) -> tuple[list[int], list[int]]:
        """`prompt(request)` and `target(answer, request)`, the request's unknown words found once."""
        unknown = self.unknown(request)
        return self._encode(request, unknown) + [self.sep], self._encode(answer, unknown) + [self.eos]

    def text(self, ids: list[int], request: str = "") -> str:
        """Decoded text up to the end token (word-level tokens come back joined by spaces;
        a copy marker comes back as the request's word it points to)."""
        end = ids.index(self.eos) if self.eos in ids else len(ids)
        if not self.markers:
            return self.tok.decode(ids[:end], skip_special_tokens=False).strip()
        unknown = self.unknown(request)
        slot = {m: k for k, m in enumerate(self.markers)}
        out = []
        for i in ids[:end]:
            if i in slot and slot[i] < len(unknown):
                out.append(unknown[slot[i]])
            else:
                out.append(self.tok.id_to_token(i) or UNK)  # ids need not be contiguous
        return " ".join(out)
