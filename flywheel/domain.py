"""The domain protocol: what a task looks like, behind one interface every stage calls.

A domain says how to make the first data (`prepare`), how the teacher writes rows
(`generate`), what the student learns to write for a label and how its answers are
scored, which verdicts its own checks can give and which rows need the LLM committee,
and what the loop plans from a failure. Stages call these methods and never test which
domain is running. Two ship: `toolcall` (flywheel/toolcall/domain.py) and `llm`
(flywheel/llm_domain.py). Domains register through the `flywheel.domains` entry-point
group (importlib.metadata), the built-in ones in this project's pyproject.toml, so this
module imports none of them. A domain of your own is a package that declares its class
there (tests/domains/ holds a test plug-in), or a `domain.py` in its `domain.path` folder beside its
templates that subclasses `Domain` and applies `@register`; `dvc.yaml` lists
`${domain.path}` as a dependency of every stage that uses the domain, so editing that
module reruns them.

`register` checks the contract when a class is registered (flywheel/registry.py: every
method of the protocol implemented with the protocol's parameters, a name, the metrics
it scores by), so a broken plug-in fails at import with a message, not in the middle of
a night's run.
Nothing here imports torch: `expand` and `generate` stay cheap to start.
"""

from __future__ import annotations

import importlib.util
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from flywheel import tables
from flywheel.config import ConfigError
from flywheel.registry import Registry

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from flywheel.config import Config, DomainConfig, GenerateConfig, PrepareConfig, TrafficConfig
    from flywheel.gate import Gate

PLUGIN = "domain.py"  # a domain of your own, under its domain.path


LENGTHS = ((6, "short"), (12, "medium"), (20, "long"))  # most words of each length bucket; longer: very_long


def length_factor(words: int) -> str:
    """The `length:` factor of a request of `words` words, for every domain."""
    return "length:" + next((name for limit, name in LENGTHS if words <= limit), "very_long")


@dataclass(frozen=True)
class Prepared:
    """What `prepare` makes for a domain: the evaluation set, the seed set (training rows
    of generation -1) and the tokenizer the student is built with."""
    evals: pd.DataFrame
    seed: pd.DataFrame
    tokenizer: "Tokenizer"


@dataclass(frozen=True)
class Teacher:
    """The teacher `generate` hands to the domain: a model behind the client layer and its
    prompt template, or None for both (the domain's embedded teacher, where it has one);
    `writer`, the template that has the model write new requests, where the domain needs
    one (`Domain.needs_writer`)."""
    client: Any
    template: Any
    writer: Any = None


class Domain(ABC):
    name: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]  # the `domain.metric` values it scores by
    teacher_variables: ClassVar[frozenset[str]]  # what the teacher template is rendered with
    needs_model_teacher: ClassVar[bool] = False  # no embedded teacher
    needs_committee: ClassVar[bool] = False  # no deterministic checks: every label goes to the committee
    needs_writer: ClassVar[bool] = False  # a teacher model writes the requests too (generate.writer)
    # evaluation splits a new champion may not drop on by more than lineage.gate_margin:
    # the requests people wrote, where a domain has them
    gated_splits: ClassVar[tuple[str, ...]] = ("user",)
    writer_variables: ClassVar[frozenset[str]] = frozenset()  # what the writer template is rendered with

    def __init__(self, cfg: "DomainConfig", root: Path = Path(".")):
        self.cfg, self.root = cfg, Path(root)

    @property
    def path(self) -> Path:
        return self.root / self.cfg.path

    # -- data -----------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, rng: random.Random, cfg: "PrepareConfig", traffic_cfg: "TrafficConfig") -> Prepared:
        """The evaluation set, the seed set and the student's tokenizer (`traffic_cfg`: the
        request log, whose redaction also applies to the domain's labelled files)."""

    @abstractmethod
    def check_files(self, traffic_cfg: "TrafficConfig") -> None:
        """Preflight: the domain's own input files and the log read cleanly (DataError otherwise)."""

    def read_gold(self, path: Path) -> pd.DataFrame:
        """The gold-labelled rows the judge is calibrated on (`judge.calibration.gold`): a
        JSONL or Parquet file of `input` and `output` (flywheel/examples.py)."""
        from flywheel.examples import read_examples

        return read_examples(path, self.label_format(), split="gold")

    def traffic_plan(self, traffic_cfg: "TrafficConfig", index: int, evals: pd.DataFrame, seed: int) -> list[dict]:
        """Plan rows (tables.plan_row) of kind `traffic` for generation `index`: requests of
        the log (`traffic_cfg`) for the teacher to label, none equal or near to an `evals`
        request. Default: none."""
        return []

    def tag_choices(self) -> list[str]:
        """The skills a committee may tag a row with (the judge prompt's `skills`); default: none."""
        return []

    @abstractmethod
    def label_format(self) -> str:
        """How label files (seed, evaluation, gold) hold labels: 'json' or 'exact' (text)."""

    @abstractmethod
    def generate(self, plan: pd.DataFrame, pool: pd.DataFrame, *, generation: str, gate: "Gate",
                 rng: random.Random, teacher: Teacher, cfg: "GenerateConfig", rubric: str, bar=None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """New rows (tables.GENERATED) for the plan, each admitted by `gate`, and their true
        labels (tables.TRUTH) where the domain knows them (empty otherwise)."""

    # -- the student ------------------------------------------------------------------------
    @abstractmethod
    def target(self, label: str) -> str:
        """The text the student learns to write for a stored label."""

    @abstractmethod
    def skills(self, seen: pd.Series | None = None) -> list[str]:
        """Skills in report order: the domain's own, then any others the rows carry."""

    @abstractmethod
    def score(self, labels: list[str], outputs: list[str]) -> list[bool]:
        """Is each student answer (decoded text) right for its stored label?"""

    @abstractmethod
    def deployed_answer(self, output: str) -> str:
        """What the registered model returns for a student answer."""

    # -- the loop ---------------------------------------------------------------------------
    @abstractmethod
    def functions(self, label: str) -> list[str]:
        """The functions a label uses (what a plan row asks the teacher to call)."""

    @abstractmethod
    def missing(self, output: str, label: str) -> list[str]:
        """The skills a wrong answer misses (empty when it is right, or when unknown)."""

    def factors(self, request: str, label: str) -> list[str]:
        """What a request is made of, as `kind:value` strings, for the failure analysis by
        factor (tasks/probe.py, tasks/evaluate.py). Any domain: the request's length; a
        domain that knows how its requests are composed says more (toolcall: notations,
        dress, case, flywheel/toolcall/factors.py)."""
        return [length_factor(len(request.split()))]

    @abstractmethod
    def random_spec(self, rng: random.Random, skill: str) -> tuple[list[str], list[str]]:
        """(functions, skills) of a `random` plan row showing `skill`."""

    # -- the judge --------------------------------------------------------------------------
    @abstractmethod
    def catalog(self) -> list:
        """What the teacher and judge prompts show of the task (toolcall: the functions)."""

    @abstractmethod
    def canon(self, value: Any) -> str | None:
        """A label value (as a teacher or judge model wrote it) in its stored form, or None
        when it is not a label of this domain."""

    @abstractmethod
    def passes(self, label: str, request: str) -> bool:
        """Do the domain's own checks accept a stored label for this request? (A correction
        from the committee counts only if they do.)"""

    @abstractmethod
    def first_verdicts(self, rows: pd.DataFrame, outputs: list[str] | None, *, use_repair: bool) -> pd.DataFrame:
        """Verdicts (tables.VERDICTS) from the domain's own checks and the student's answers."""

    @abstractmethod
    def undecided(self, verdicts: pd.DataFrame) -> pd.Series:
        """The rows the committee is asked about, when there is one."""

    @abstractmethod
    def judge_report(self, verdicts: pd.DataFrame, truth: pd.DataFrame) -> dict:
        """judge.json: verdict counts, and the judge's precision and recall where the truth is known."""

    # A Hugging Face student (flywheel/student/hf.py) reads and writes chat turns. These
    # defaults suit a text-to-text domain; `toolcall` shows its catalog as tools.
    def chat_tools(self) -> list | None:
        """Tools for the chat template (OpenAI-style JSON schemas), or None."""
        return None

    def chat_target(self, label: str) -> str:
        """The assistant turn a chat student learns for `label`."""
        return self.target(label)

    def from_chat(self, text: str) -> str:
        """A chat student's assistant text as an output `score` reads; strict: an
        unreadable answer becomes one that scores wrong, never a repaired guess."""
        return text.strip()

    def tag_skills(self, skills: list[str], suggested: tuple[str, ...]) -> list[str]:
        """A row's skills after the committee suggested some (default: unchanged)."""
        return skills


GROUP = "flywheel.domains"  # the entry-point group domains register in (pyproject.toml)
DOMAINS = Registry(Domain, key="name", group=GROUP, what="domain", checks=(
    ("metrics", lambda m: isinstance(m, tuple) and bool(m) and all(isinstance(x, str) for x in m),
     "a non-empty tuple of metric names"),
    ("teacher_variables", lambda v: isinstance(v, frozenset), "a frozenset of template variables")))
PROTOCOL = DOMAINS.protocol


def register(cls: type[Domain]) -> type[Domain]:
    """Add a domain under `cls.name`, after checking it keeps the protocol."""
    return DOMAINS.register(cls)


def available() -> list[str]:
    """The domains installed packages declare, and those registered so far."""
    return DOMAINS.names()


def _plugin(cfg: "DomainConfig", root: Path) -> None:
    """Import <domain.path>/domain.py, which registers the domain it defines."""
    path = root / cfg.path / PLUGIN
    if not path.is_file():
        return
    spec = importlib.util.spec_from_file_location(f"flywheel_domain_{cfg.name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (TypeError, ImportError, SyntaxError) as exc:
        raise ConfigError(f"{path}: {' '.join(str(exc).split())}") from None


def get(cfg: "DomainConfig", root: Path = Path(".")) -> Domain:
    """The domain `cfg.name`, checked against `cfg.metric`: registered already, declared by
    an installed package's entry point, or defined by a domain.py under `cfg.path`."""
    try:
        cls = DOMAINS.load(cfg.name)
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    if cls is None:
        _plugin(cfg, Path(root))
        cls = DOMAINS.load(cfg.name)
    if cls is None:
        raise ConfigError(f"params.yaml: domain.name: {cfg.name!r} is not a domain ({', '.join(available())}, "
                          f"or one registered by {Path(cfg.path) / PLUGIN})")
    if cfg.metric not in cls.metrics:
        raise ConfigError(f"params.yaml: domain.metric: {cfg.metric!r} does not fit domain {cfg.name!r} "
                          f"({cfg.name} scores by {' or '.join(repr(m) for m in cls.metrics)})")
    return cls(cfg, Path(root))


def require_teacher(dom: Domain, teacher, *, logged: bool = False) -> None:
    """A domain without an embedded teacher, or requests from a log (`logged`: the
    embedded teacher labels only requests it wrote itself), need a teacher model."""
    if teacher != "embedded":
        return
    if dom.needs_model_teacher:
        why = getattr(dom, "why_model_teacher", "")
        raise ConfigError(f"params.yaml: generate.teacher: the {dom.name} domain needs an openai or transformers "
                          "teacher" + (f" ({why})" if why else ""))
    if logged:
        raise ConfigError("params.yaml: generate.teacher: requests from a log (traffic.file) need an openai or "
                          "transformers teacher: the embedded teacher labels only the requests it writes itself")


def require_committee(dom: Domain, committee: list) -> None:
    if dom.needs_committee and not committee:
        raise ConfigError(f"params.yaml: judge.committee: the {dom.name} domain needs at least one judge")


def check(cfg: "Config", root: Path = Path(".")) -> Domain:
    """The domain of a whole config, with what it needs from the other sections (what
    `flywheel check` and `flywheel run` verify first; each stage checks its own part)."""
    dom = get(cfg.domain, root)
    require_teacher(dom, cfg.generate.teacher, logged=bool(cfg.traffic.file))
    require_committee(dom, cfg.judge.committee)
    return dom


def score_rows(dom: Domain, labels: list[str], outputs: list[str], contexts=None) -> list[bool]:
    """`dom.score`, each row against its own context (the tools its logged request offered:
    flywheel/toolcall/records.py) where some row has one; a domain without contexts is
    asked as ever."""
    if contexts is not None and any(map(tables.context, contexts)) and hasattr(dom, "score_with"):
        return dom.score_with(labels, outputs, list(contexts))
    return dom.score(labels, outputs)
