"""The student: a small GPT-2-style causal LM that reads a request and writes its answer.

Text layout: `<request tokens> [SEP] <answer tokens> [EOS]`; the loss covers only the
answer tokens. The tokenizer (word-level for `toolcall`, digits split one by one so unseen
numbers and dates can still be copied; byte-level BPE for `llm`) is trained once, in
`prepare`, and travels inside every checkpoint: a `Student` folder holds config, weights
and tokenizer in transformers' layout (the network is GPT-2 in plain torch,
flywheel/gpt2.py, which transformers loads as a GPT2LMHeadModel), and `load(folder, dom)` is the one call that
brings back a checkpoint of either kind: this built-in student or a Hugging Face model of
your own (flywheel/hf_student.py, params.yaml `student:`). `answer` is the one answering
path of `evaluate`, `probe`, the judge's comparison and the registered MLflow model.

Everything here is deterministic for a given seed and thread count: the same inputs
give bit-identical checkpoints, which is what lets `dvc repro` reproduce a generation.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tokenizers import Tokenizer
from threadpoolctl import threadpool_limits

from flywheel.gpt2 import GPT2, Config
from flywheel.vocab import COPY_MARKERS, EOS, PAD, SEP, UNK

IGNORE = -100
TOKENIZER, TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"


def build_model(vocab_size: int, *, n_layer: int, n_embd: int, n_head: int, n_positions: int,
                seed: int, eos_token_id: int, pad_token_id: int) -> GPT2:
    return GPT2(Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                       n_head=n_head, eos_token_id=eos_token_id, pad_token_id=pad_token_id)).init_weights(seed)


def set_threads(n: int) -> None:
    """`n` threads for the matrix products (OpenBLAS), one for torch's element-wise
    kernels: two thread pools spinning on the same cores cost a third of a step
    (bench/train_speed.py). Part of the numerics: the bytes depend on `n`."""
    torch.set_num_threads(1)
    threadpool_limits(n, user_api="blas")
    torch.use_deterministic_algorithms(True)


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


def pad_batch(pairs: list[tuple[list[int], list[int]]], pad: int):
    """(ids, labels, attention mask) of a batch of (prompt ids, answer ids), right-padded to
    its longest row; labels are IGNORE on the prompt and the padding. Every kind of student
    batches with it (the built-in loop, the Hugging Face student's Trainer collator and its
    losses). Built in numpy in one pass: a tensor per row cost 5% of a training step."""
    prompt = np.fromiter((len(p) for p, _ in pairs), dtype=np.int64, count=len(pairs))
    total = prompt + np.fromiter((len(t) for _, t in pairs), dtype=np.int64, count=len(pairs))
    col = np.arange(int(total.max()))
    mask = col < total[:, None]
    ids = np.full(mask.shape, pad, dtype=np.int64)
    ids[mask] = [i for p, t in pairs for i in (*p, *t)]
    labels = np.where(mask & (col >= prompt[:, None]), ids, IGNORE)
    return torch.from_numpy(ids), torch.from_numpy(labels), torch.from_numpy(mask.astype(np.int64))


def answer_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The next-token targets of a padded batch and where they are answer tokens: position
    i predicts labels[:, i + 1]."""
    target = labels[:, 1:]
    return target, target != IGNORE


def per_row(ce: torch.Tensor, keep: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and largest of each row's token losses, from `ce`: the losses at the `keep`
    positions, flattened row by row (0 for a row with no answer tokens)."""
    counts = keep.sum(1).tolist()
    ends = np.cumsum(counts)
    mean, worst = np.zeros(len(counts)), np.zeros(len(counts))
    for row, (end, n) in enumerate(zip(ends, counts)):
        if n:
            part = ce[end - n: end]
            mean[row], worst[row] = float(part.mean()), float(part.max())
    return mean, worst


BUCKET = 16  # batches whose rows are sorted by length together


def bucketed(rng: random.Random, lengths: list[int], batch_size: int) -> list[list[int]]:
    """One epoch of batches: a shuffled order cut into spans of BUCKET batches, each span
    sorted by length before it is cut into batches, and the batches shuffled. Rows of
    similar length share a batch, so padding (which costs as much as real tokens) stays
    small, while every epoch still sees every row once in a seeded random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * BUCKET
    out = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start: start + span], key=lambda i: lengths[i])
        out += [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


def answer_losses(model: GPT2, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each answer token given the tokens before it, flattened row by
    row. The output head runs on those positions only (the prompt's logits are never
    used: a tenth of a training step's products)."""
    states = model(ids, mask)[0][:, :-1]
    target, keep = answer_positions(labels)
    return torch.nn.functional.cross_entropy(model.head(states[keep]), target[keep], reduction="none")


def train(model: GPT2, pairs: list[tuple[list[int], list[int]]], *, steps: int, batch_size: int,
          lr: float, warmup_steps: int, weight_decay: float, seed: int, pad: int,
          on_step: Callable[[int, float], None] | None = None, grad_accum: int = 1) -> list[tuple[int, float]]:
    """Train in place for `steps` optimizer steps, each on `grad_accum` batches (their mean
    gradient); returns (step, loss) pairs. Cosine schedule to 10%."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    # fused: ATen's one AdamW kernel, whose square root is the CPU's exact instruction. The
    # foreach and per-tensor paths take the root from MKL's vector maths, which gives other
    # bytes on another CPU even in MKL's COMPATIBLE mode (docs/reproducibility.md).
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    model.train()
    batches: list[list[int]] = []
    history = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        value = 0.0
        for _ in range(grad_accum):
            if not batches:
                batches = bucketed(rng, [len(p) + len(t) for p, t in pairs], batch_size)
            ids, labels, mask = pad_batch([pairs[i] for i in batches.pop()], pad)
            loss = answer_losses(model, ids, mask, labels).mean()
            (loss / grad_accum if grad_accum > 1 else loss).backward()
            value += loss.item() / grad_accum
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
        sched.step()
        history.append((step + 1, value))
        if on_step:
            on_step(step + 1, value)
    model.eval()
    return history


run_steps = train  # the training loop, by a name a method whose `train` is the config can call


@torch.no_grad()
def greedy(model: GPT2, prompts: list[list[int]], *, eos: int, max_new_tokens: int,
           batch_size: int, on_batch: Callable[[int], None] | None = None, temperature: float = 0.0,
           seed: int = 0) -> list[list[int]]:
    """Greedy continuations, or with `temperature` > 0 sampled ones (torch generator
    seeded with `seed`, so a sample is reproducible). Prompts are grouped by length, so
    no batch needs padding."""
    gen_rng = torch.Generator().manual_seed(seed)
    model.eval()
    out: list[list[int]] = [[] for _ in prompts]
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    limit = model.config.n_positions
    for length in sorted(by_len):
        rows = by_len[length]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start: start + batch_size]
            ids = torch.tensor([prompts[i] for i in chunk])
            done = torch.zeros(len(chunk), dtype=torch.bool)
            past, step_input = None, ids
            gen = []
            for _ in range(min(max_new_tokens, limit - length)):
                states, past = model(step_input, past=past)
                logits = model.head(states[:, -1])
                if temperature > 0:
                    nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen_rng)[:, 0]
                else:
                    nxt = logits.argmax(-1)
                nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
                gen.append(nxt)
                done |= nxt == eos
                if bool(done.all()):
                    break
                step_input = nxt[:, None]
            cols = torch.stack(gen, 1).tolist() if gen else [[] for _ in chunk]
            for i, seq in zip(chunk, cols):
                out[i] = seq
            if on_batch:
                on_batch(len(chunk))
    return out


@torch.no_grad()
def token_losses(model: GPT2, pairs: list[tuple[list[int], list[int]]], *, pad: int,
                 batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced cross-entropy of each row's answer tokens: their mean and their
    largest, per row (0 for a row with no answer tokens). Rows go through in order of
    length (little padding)."""
    model.eval()
    mean, worst = np.zeros(len(pairs)), np.zeros(len(pairs))
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))  # little padding
    for start in range(0, len(order), batch_size):
        rows = order[start: start + batch_size]
        ids, labels, mask = pad_batch([pairs[i] for i in rows], pad)
        mean[rows], worst[rows] = per_row(answer_losses(model, ids, mask, labels), answer_positions(labels)[1])
    return mean, worst


def row_losses(model: GPT2, pairs: list[tuple[list[int], list[int]]], *, pad: int,
               batch_size: int) -> np.ndarray:
    """Mean cross-entropy of each row's call tokens, teacher-forced."""
    return token_losses(model, pairs, pad=pad, batch_size=batch_size)[0]


def load_model(model_dir: Path) -> GPT2:
    """A saved student's network (safetensors only: no pickled weights are ever loaded)."""
    return GPT2.load(Path(model_dir))


@dataclass
class Student:
    """The built-in student (kind `builtin`): a checkpoint that describes itself, the
    network and the tokenizer it reads with."""
    model: GPT2
    codec: Codec
    dom: Any = None  # the domain whose labels label_losses reads (set by `load`)
    kind = "builtin"
    random_at_start = True  # prepare's network is random: the judge does not ask it

    @classmethod
    def build(cls, tokenizer: Tokenizer, *, seed: int, n_layer: int, n_embd: int, n_head: int,
              n_positions: int) -> "Student":
        codec = Codec(tokenizer)
        vocab = max(tokenizer.get_vocab().values()) + 1  # ids need not be contiguous
        model = build_model(vocab, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                            n_positions=n_positions, seed=seed, eos_token_id=codec.eos, pad_token_id=codec.pad)
        return cls(model, codec)

    @classmethod
    def check(cls, student, dom, root: Path = Path(".")) -> None:
        """prepare.model sizes it (the config validated that); what it would ignore is
        refused: it is trained in full, in float32, on the CPU."""
        if student.lora.r:
            raise StudentError("student.lora.r: the built-in student is trained in full; LoRA needs a model of your "
                               "own (student.model)")
        if student.device not in ("auto", "cpu"):
            raise StudentError(f"student.device: the built-in student runs on the CPU, not {student.device!r}")
        if student.dtype not in ("auto", "float32"):
            raise StudentError(f"student.dtype: the built-in student computes in float32, not {student.dtype!r}")

    @classmethod
    def claims(cls, folder: Path) -> bool:
        return (Path(folder) / TOKENIZER).exists()

    @classmethod
    def make(cls, folder: Path, *, dom, tokenizer: Tokenizer, prepare, student, seed: int) -> str:
        """prepare's student: a random network sized by `prepare.model`, and the tokenizer."""
        built = cls.build(tokenizer, seed=seed, **prepare.model.model_dump())
        built.save(folder)
        return f"student {built.parameters:,} parameters, vocabulary {tokenizer.get_vocab_size()}"

    @classmethod
    def load(cls, folder: Path, dom=None, *, trainable: bool = False, seed: int | None = None,
             threads: int | None = None, base: str | None = None) -> "Student":
        if threads is not None:
            set_threads(threads)
        return cls(load_model(folder), Codec(Tokenizer.from_file(str(Path(folder) / TOKENIZER))), dom)

    def fit(self, requests: list[str], labels: list[str], *, train, student, seed: int,
            progress: Callable[[int, float], None] | None = None) -> list[tuple[int, float]]:
        """`train.steps` steps of AdamW on the answer tokens, each on `student.grad_accum`
        batches; returns the loss every `train.log_every` steps and at the last."""
        pairs = self.pairs(requests, [self.dom.target(label) for label in labels])
        limit = self.model.config.n_positions
        too_long = [i for i, (p, t) in enumerate(pairs) if len(p) + len(t) > limit]
        if too_long:
            raise StudentError(f"row {too_long[0] + 1} is longer than prepare.model.n_positions={limit} tokens")
        history = run_steps(self.model, pairs, steps=train.steps, batch_size=train.batch_size, lr=train.lr,
                            warmup_steps=train.warmup_steps, weight_decay=train.weight_decay, seed=seed,
                            pad=self.codec.pad, on_step=progress, grad_accum=student.grad_accum)
        self._fitted = (sum(len(p) + len(t) for p, t in pairs) / len(pairs) * train.batch_size * train.steps * student.grad_accum,
                        train.steps, history[-1][1])
        return [(step, loss) for step, loss in history if step % train.log_every == 0 or step == train.steps]

    def describe(self, rows: int, seconds: float) -> str:
        tokens, steps, loss = self._fitted
        return f"{steps} steps on {rows} rows in {seconds:.1f}s ({tokens / seconds:,.0f} tokens/s), final loss {loss:.4f}"

    @classmethod
    def origin(cls, folder: Path) -> dict:
        """Nothing: the built-in student grows from the random network prepare made."""
        return {}

    def save(self, folder: Path) -> None:
        """Config, safetensors weights and tokenizer into `folder` (a new directory)."""
        self.model.save(folder)
        self.codec.save(folder)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def pairs(self, requests: list[str], targets: list[str]) -> list[tuple[list[int], list[int]]]:
        """(prompt ids, answer ids) per row: what training and the loss read."""
        return [self.codec.pair(r, t) for r, t in zip(requests, targets)]

    def answer(self, requests: list[str], *, batch_size: int, max_new_tokens: int = 64,
               on_batch: Callable[[int], None] | None = None, temperature: float = 0.0, seed: int = 0) -> list[str]:
        """The student's greedy answer to each request, as decoded text (sampled at
        `temperature` > 0)."""
        outs = greedy(self.model, [self.codec.prompt(r) for r in requests], eos=self.codec.eos,
                      max_new_tokens=max_new_tokens, batch_size=batch_size, on_batch=on_batch,
                      temperature=temperature, seed=seed)
        return [self.codec.text(o, r) for o, r in zip(outs, requests)]

    def losses(self, requests: list[str], targets: list[str], *, batch_size: int) -> np.ndarray:
        return row_losses(self.model, self.pairs(requests, targets), pad=self.codec.pad, batch_size=batch_size)

    def label_losses(self, requests: list[str], labels: list[str], *, batch_size: int) -> np.ndarray:
        """Mean answer-token loss per row, for labels in the domain's format."""
        return self.losses(requests, [self.dom.target(label) for label in labels], batch_size=batch_size)


# -- the student interface: every kind of student, one registry ------------------------------

GROUP = "flywheel.students"  # the entry-point group student kinds register in (pyproject.toml)
PROTOCOL = ("check", "claims", "make", "load", "fit", "answer", "label_losses", "save", "describe", "origin")
_KINDS: dict[str, type] = {}


class StudentError(ValueError):
    """A student configuration or checkpoint that cannot work; the message is one line."""


def register_kind(cls: type) -> type:
    """Add a student kind under `cls.kind`, after checking it has the whole interface:
    `check(student, dom, root)` (refuse a config that cannot work, before any work: a
    `StudentError`), `claims(folder)` (is this checkpoint mine?), `make(folder, *, dom,
    tokenizer, prepare, student, seed)` (prepare's untrained student, recording in the
    folder whatever of `student:` later stages need; returns what the log says of it),
    `load(folder, dom, *, trainable, seed, threads, base)` (reads the folder only),
    `origin(folder)` (what it grew from, for the MLflow lineage: `{}`, or `base`,
    `revision` and `adapter`), and on an instance `fit(requests, labels, *, train,
    student, seed, progress)` (`student`: grad_accum and max_length; returns the (step,
    loss) curve to plot), `answer`, `label_losses`, `save(folder)`, `describe(rows,
    seconds)` (the train log's line), plus `random_at_start` (prepare's student knows
    nothing, so the judge does not ask it)."""
    where = f"student kind {cls.__module__}.{cls.__qualname__}"
    name = getattr(cls, "kind", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"{where}: 'kind' must be an identifier, not {name!r}")
    missing = [m for m in PROTOCOL if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(f"{where}: does not implement {', '.join(missing)}")
    if not isinstance(getattr(cls, "random_at_start", None), bool):
        raise TypeError(f"{where}: 'random_at_start' must be a bool")
    if name in _KINDS and _KINDS[name] is not cls:
        raise TypeError(f"{where}: the kind {name!r} is taken by {_KINDS[name].__module__}")
    _KINDS[name] = cls
    return cls


def kinds() -> dict[str, type]:
    """Every kind: registered so far, or declared by an installed package's entry point."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=GROUP):
        if ep.name not in _KINDS:
            register_kind(ep.load())
    return dict(_KINDS)


def kind_for(cfg) -> type:
    """The kind `student:` asks for: `kind`, else a Hugging Face model when `model` is set,
    else the built-in student."""
    name = cfg.kind or ("hf" if cfg.model else "builtin")
    found = kinds().get(name)
    if found is None:
        raise StudentError(f"student.kind: {name!r} is not a student kind ({', '.join(sorted(kinds()))})")
    return found


def kind_of(folder: Path) -> type:
    """The kind whose checkpoint `folder` is (the one switch between kinds): a kind of
    your own or `hf` when it claims the folder, else the built-in student."""
    for cls in kinds().values():
        if cls.kind != "builtin" and cls.claims(Path(folder)):
            return cls
    return _KINDS["builtin"]


def load(folder: Path, dom, *, trainable: bool = False, seed: int | None = None, threads: int | None = None,
         base: str | None = None):
    """The checkpoint at `folder`, of whichever kind it is: ready to answer, or with
    `trainable` to `fit` (`seed` and `threads`: what training draws with). Everything
    else it needs (a Hugging Face student's base, LoRA, device, dtype) the folder records."""
    return kind_of(folder).load(Path(folder), dom, trainable=trainable, seed=seed, threads=threads, base=base)


def origin(folder: Path) -> dict:
    """What the checkpoint at `folder` grew from (its kind's `origin`)."""
    return kind_of(folder).origin(Path(folder))


def student_answers(stage: str, model_dir: Path, requests: list[str], *, dom, batch_size: int,
                    max_new_tokens: int = 64) -> tuple[Student, list[str]]:
    """The one answering path of `judge`, `evaluate` and `probe`: load the checkpoint and
    answer every request greedily, with progress. Returns the student and its answers."""
    from flywheel.stage import Progress

    student = load(model_dir, dom)
    bar = Progress(stage, "student answers", len(requests))
    outputs = student.answer(requests, batch_size=batch_size, max_new_tokens=max_new_tokens, on_batch=bar.advance)
    bar.close()
    return student, outputs


register_kind(Student)
