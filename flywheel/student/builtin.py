"""The built-in student (kind `builtin`): a small GPT-2-style causal LM, trained from
nothing, that reads a request and writes its answer.

Text layout: `<request tokens> [SEP] <answer tokens> [EOS]`; the loss covers only the
answer tokens. The tokenizer (word-level for `toolcall`, numbers whole and rare words
copied from the request through markers; byte-level BPE for `llm`) is trained once, in
`prepare`, and travels inside every checkpoint (codec.py reads with it). A folder holds
config, weights and tokenizer in transformers' layout (the network is GPT-2 in plain
torch, gpt2.py, which transformers loads as a GPT2LMHeadModel).

Here: the training loop (`train_loop`), greedy and sampled decoding with a key/value
cache (`greedy`), the label losses the probe ranks by (`label_losses`), and the kind's
class. Everything is deterministic for a given seed and thread count: the same inputs
give bit-identical checkpoints, which is what lets `dvc repro` reproduce a generation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tokenizers import Tokenizer

from flywheel.student import StudentError, StudentKind
from flywheel.student.batches import answer_positions, bucketed, mean_per_row, pad_batch
from flywheel.student.codec import TOKENIZER, Codec
from flywheel.student.gpt2 import GPT2, Config


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


def answer_losses(model: GPT2, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each answer token given the tokens before it, flattened row by
    row. The output head runs on those positions only (the prompt's logits are never
    used: a tenth of a training step's products)."""
    states = model(ids, mask)[0][:, :-1]
    target, keep = answer_positions(labels)
    return torch.nn.functional.cross_entropy(model.head(states[keep]), target[keep], reduction="none")


def train_loop(model: GPT2, pairs: list[tuple[list[int], list[int]]], *, steps: int, batch_size: int,
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
def label_losses(model: GPT2, pairs: list[tuple[list[int], list[int]]], *, pad: int, batch_size: int) -> np.ndarray:
    """Teacher-forced cross-entropy of each row's answer tokens, their mean per row (0 for
    a row with no answer tokens). Rows go through in order of length (little padding)."""
    model.eval()
    mean = np.zeros(len(pairs))
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    for start in range(0, len(order), batch_size):
        rows = order[start: start + batch_size]
        ids, labels, mask = pad_batch([pairs[i] for i in rows], pad)
        mean[rows] = mean_per_row(answer_losses(model, ids, mask, labels), answer_positions(labels)[1])
    return mean


def load_model(model_dir: Path) -> GPT2:
    """A saved student's network (safetensors only: no pickled weights are ever loaded)."""
    return GPT2.load(Path(model_dir))


@dataclass
class Student(StudentKind):
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
            progress: Callable[[int, float], None] | None = None, contexts: list | None = None) -> list[tuple[int, float]]:
        """`train.steps` steps of AdamW on the answer tokens, each on `student.grad_accum`
        batches; returns the loss every `train.log_every` steps and at the last. It reads
        the request only (`contexts` are not for it: reads_tools is False)."""
        pairs = self.pairs(requests, [self.dom.target(label) for label in labels])
        limit = self.model.config.n_positions
        too_long = [i for i, (p, t) in enumerate(pairs) if len(p) + len(t) > limit]
        if too_long:
            raise StudentError(f"row {too_long[0] + 1} is longer than prepare.model.n_positions={limit} tokens")
        history = train_loop(self.model, pairs, steps=train.steps, batch_size=train.batch_size, lr=train.lr,
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
               on_batch: Callable[[int], None] | None = None, temperature: float = 0.0, seed: int = 0,
               contexts: list | None = None, raw: bool = False) -> list[str]:
        """The student's greedy answer to each request, as decoded text (sampled at
        `temperature` > 0); `max_new_tokens` 0 is 64."""
        outs = greedy(self.model, [self.codec.prompt(r) for r in requests], eos=self.codec.eos,
                      max_new_tokens=max_new_tokens or 64, batch_size=batch_size, on_batch=on_batch,
                      temperature=temperature, seed=seed)
        return [self.codec.text(o, r) for o, r in zip(outs, requests)]

    def label_losses(self, requests: list[str], labels: list[str], *, batch_size: int,
                     contexts: list | None = None) -> np.ndarray:
        """Mean answer-token loss per row, for labels in the domain's format."""
        pairs = self.pairs(requests, [self.dom.target(label) for label in labels])
        return label_losses(self.model, pairs, pad=self.codec.pad, batch_size=batch_size)
