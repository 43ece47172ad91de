"""The student, the model the flywheel trains: one interface every kind of student
implements (`StudentKind`), the registry of kinds, and the one path that loads a
checkpoint and answers with it (`load`, `student_answers`: `evaluate`, `probe`, the
judge's comparison and the registered MLflow model).

Two kinds ship, registered by the `flywheel.students` entry point (pyproject.toml):
`builtin` (builtin.py: a small GPT-2 trained from nothing on the domain's own
tokenizer) and `hf` (hf.py: any Hugging Face causal LM, fully tuned or with LoRA). A
checkpoint folder describes itself, so after `prepare` the folder says which kind it is
(`kind_of`, the one switch); no stage tests the kind. Nothing here imports torch.

The package: batches.py (padding, the answer mask, per-row losses, length buckets, shared
by every kind), codec.py (the built-in student's text <-> ids), gpt2.py (its network),
builtin.py, hf.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from flywheel.errors import FlywheelError
from flywheel.registry import Registry


class StudentError(FlywheelError, ValueError):
    """A student configuration or checkpoint that cannot work; the message is one line."""


class StudentKind(ABC):
    """A kind of student. `kind` names it (`student.kind`); `random_at_start` says that
    prepare's student knows nothing yet, so the judge does not ask it; `reads_tools`, that
    `answer` takes per-row `contexts` (messages and tools through a chat template) and
    `raw` answers; `checks_labels`, that `answer` takes `expected` labels."""
    kind: ClassVar[str]
    random_at_start: ClassVar[bool]
    reads_tools: ClassVar[bool] = False
    checks_labels: ClassVar[bool] = False

    # -- before any work, and for the lineage (no instance) -------------------------------------
    @classmethod
    @abstractmethod
    def check(cls, student, dom, root: Path = Path(".")) -> None:
        """Refuse a `student:` config that cannot work, before any work (StudentError)."""

    @classmethod
    @abstractmethod
    def claims(cls, folder: Path) -> bool:
        """Is the checkpoint folder one of this kind's?"""

    @classmethod
    @abstractmethod
    def make(cls, folder: Path, *, dom, tokenizer, prepare, student, seed: int) -> str:
        """prepare's untrained student, recording in the folder whatever of `student:`
        later stages need; returns what the log says of it."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, dom=None, *, trainable: bool = False, seed: int | None = None,
             threads: int | None = None, base: str | None = None) -> "StudentKind":
        """The checkpoint, from the folder alone: ready to answer, or with `trainable` to
        `fit` (`seed`, `threads`: what training draws with; `base`: a local copy of a
        LoRA student's base model)."""

    @classmethod
    @abstractmethod
    def origin(cls, folder: Path) -> dict:
        """What the checkpoint grew from, for the MLflow lineage: `{}`, or `base`,
        `revision` and `adapter`."""

    # -- a loaded student ------------------------------------------------------------------------
    @abstractmethod
    def fit(self, requests: list[str], labels: list[str], *, train, student, seed: int,
            progress: Callable[[int, float], None] | None = None, contexts: list | None = None) -> list[tuple[int, float]]:
        """Train on the rows (`train`: the train section; `student`: grad_accum and
        max_length); returns the (step, loss) curve `train_loss.csv` plots. `contexts`
        (a kind that `reads_tools`): each row's turns and tools (records.prompt)."""

    @abstractmethod
    def answer(self, requests: list[str], *, batch_size: int, max_new_tokens: int = 64,
               on_batch: Callable[[int], None] | None = None, temperature: float = 0.0, seed: int = 0,
               contexts: list | None = None, raw: bool = False) -> list[str]:
        """Its answer to each request, as the domain's output text (greedy; sampled at
        `temperature` > 0, reproducibly per `seed`); with `raw`, the text as it wrote it.
        `max_new_tokens` 0: the kind's own limit (the longest answer it trained on). A kind
        that `checks_labels` also takes `expected`: a label per row (or None); a row whose
        greedy answer it can show to be that label is answered without decoding (the
        answers are the same)."""

    @abstractmethod
    def label_losses(self, requests: list[str], labels: list[str], *, batch_size: int,
                     contexts: list | None = None) -> np.ndarray:
        """The mean answer-token loss of each stored label, teacher-forced."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """The checkpoint into `folder` (a new directory)."""

    @abstractmethod
    def describe(self, rows: int, seconds: float) -> str:
        """The train log's line about the last `fit`."""


GROUP = "flywheel.students"  # the entry-point group student kinds register in (pyproject.toml)
KINDS = Registry(StudentKind, key="kind", group=GROUP, what="student kind",
                 checks=(("random_at_start", lambda v: isinstance(v, bool), "a bool"),))
PROTOCOL = KINDS.protocol


def register_kind(cls: type) -> type:
    """Add a kind of student under `cls.kind`, after checking it keeps the interface."""
    return KINDS.register(cls)


def kinds() -> dict[str, type]:
    """Every kind: registered so far, or declared by an installed package's entry point."""
    return KINDS.all()


def kind_for(cfg) -> type:
    """The kind `student:` asks for: `kind`, else a Hugging Face model when `model` is set,
    else the built-in student."""
    name = cfg.kind or ("hf" if cfg.model else "builtin")
    found = kinds().get(name)
    if found is None:
        raise StudentError(f"student.kind: {name!r} is not a student kind ({', '.join(sorted(kinds()))})")
    return found


def kind_of(folder: Path) -> type:
    """The kind whose checkpoint `folder` is: a kind of your own or `hf` when it claims the
    folder, else the built-in student."""
    every = kinds()
    for cls in every.values():
        if cls.kind != "builtin" and cls.claims(Path(folder)):
            return cls
    return every["builtin"]


def load(folder: Path, dom, *, trainable: bool = False, seed: int | None = None, threads: int | None = None,
         base: str | None = None) -> StudentKind:
    """The checkpoint at `folder`, of whichever kind it is."""
    return kind_of(folder).load(Path(folder), dom, trainable=trainable, seed=seed, threads=threads, base=base)


def origin(folder: Path) -> dict:
    """What the checkpoint at `folder` grew from (its kind's `origin`)."""
    return kind_of(folder).origin(Path(folder))


def with_contexts(student: StudentKind, requests: list[str], contexts) -> dict:
    """The keyword that hands a student that reads tools each row's own turns and tools
    (flywheel/toolcall/records.py `prompt`); {} where no row has any or the student reads
    only the request."""
    from flywheel.tables import context

    if contexts is None or not student.reads_tools or not any(map(context, contexts)):
        return {}
    from flywheel.toolcall.records import prompt

    return {"contexts": [prompt(r, context(c)) for r, c in zip(requests, contexts)]}


def student_answers(stage: str, model_dir: Path, requests: list[str], *, dom, batch_size: int,
                    max_new_tokens: int = 0, contexts=None, expected=None) -> tuple[StudentKind, list[str]]:
    """The one answering path of `judge`, `evaluate` and `probe`: load the checkpoint and
    answer every request greedily (with its row's context: `with_contexts`; at most
    `max_new_tokens`, 0: the kind's own limit), with
    progress. `expected`: the training-side labels of the rows (judge: the teacher's;
    probe: the stored ones), which a student may use to skip decoding rows it provably
    answers with them (`StudentKind.answer`); evaluate never passes its labels. Returns
    the student and its answers."""
    from flywheel.stage import Progress

    student = load(model_dir, dom)
    bar = Progress(stage, "student answers", len(requests))
    outputs = student.answer(requests, batch_size=batch_size, max_new_tokens=max_new_tokens, on_batch=bar.advance,
                             **({"expected": list(expected)} if expected is not None and student.checks_labels else {}),
                             **with_contexts(student, requests, contexts))
    bar.close()
    return student, outputs
