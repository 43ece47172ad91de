"""The student's tokenizers, trained locally with `tokenizers` in `prepare` (no torch here,
so the domains that make them stay cheap to import). Both reserve the same special
tokens, whose ids the student reads from the tokenizer.

- `train_tokenizer` (toolcall): word-level, digits split one by one so unseen numbers and
  dates can still be copied digit by digit.
- `train_bpe_tokenizer` (llm): byte-level BPE, so any text encodes and decodes back.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, UNK, SEP, EOS = "[PAD]", "[UNK]", "[SEP]", "[EOS]"


def train_tokenizer(texts: Iterable[str]) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    trainer = trainers.WordLevelTrainer(special_tokens=[PAD, UNK, SEP, EOS], min_frequency=1)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE for the `llm` domain: any text encodes, and decoding gives it back."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK, SEP, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok
