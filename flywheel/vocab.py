"""The student's tokenizers, trained locally with `tokenizers` in `prepare` (no torch here,
so the domains that make them stay cheap to import). Both reserve the same special
tokens, whose ids the student reads from the tokenizer.

- `train_copy_tokenizer` (toolcall): word-level over the words the generator uses often,
  case-folded, numbers whole, punctuation as tokens, plus copy markers `[C0]`..: a word
  the vocabulary does not have (an unseen city, a name, a typo) is read as the marker of
  its place among the request's unknown words, and an answer writes that marker to copy
  it (flywheel/student/codec.py). Nothing is lost: every word is a token of its own or a pointer to
  the request's exact characters.
- `train_tokenizer`: the same without markers (unknown words become [UNK]).
- `train_bpe_tokenizer` (llm): byte-level BPE, so any text encodes and decodes back.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, UNK, SEP, EOS = "[PAD]", "[UNK]", "[SEP]", "[EOS]"
COPY_MARKERS = tuple(f"[C{i}]" for i in range(32))  # the i-th distinct unknown word of a request
DIGITS = tuple(str(i) for i in range(100)) + tuple(f"{i:02d}" for i in range(10))  # days, hours, minutes


# Numbers whole ("1,200", "283.75", "98765"), words with their inner apostrophes and
# underscores ("Grandma's", "get_weather"), every other character on its own.
WORD_PATTERN = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[^\W\d]+(?:['’][^\W\d]+)*|[^\w\s]"


def pre_tokenizer(copy: bool = False):
    if copy:
        return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                        pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")])
    return pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])


def train_tokenizer(texts: Iterable[str], *, min_frequency: int = 1, copy: bool = False) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizer(copy)
    special = [PAD, UNK, SEP, EOS, *(COPY_MARKERS + DIGITS if copy else ())]
    trainer = trainers.WordLevelTrainer(special_tokens=special, min_frequency=min_frequency)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def train_copy_tokenizer(texts: Iterable[str], min_frequency: int) -> Tokenizer:
    """Words seen at least `min_frequency` times, in lower case (the codec reads any
    case of them), with the copy markers; rare words are left to the markers."""
    return train_tokenizer((t.lower() for t in texts), min_frequency=min_frequency, copy=True)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE for the `llm` domain: any text encodes, and decoding gives it back."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK, SEP, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok
