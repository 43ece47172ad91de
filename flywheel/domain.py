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

`register` checks the contract when a class is registered (every method of the protocol
implemented with the protocol's parameters, a name, the metrics it scores by), so a
broken plug-in fails at import with a message, not in the middle of a night's run.
Nothing here imports torch: `expand` and `generate` stay cheap to start.
"""

from __future__ import annotations

import importlib.util
import inspect
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from flywheel.config import ConfigError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from flywheel.config import Config, DomainConfig, GenerateConfig, PrepareConfig
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
    def prepare(self, rng: random.Random, cfg: "PrepareConfig") -> Prepared:
        """The evaluation set, the seed set and the student's tokenizer."""

    @abstractmethod
    def check_files(self) -> None:
        """Preflight: the domain's own input files read cleanly (DataError otherwise)."""

    def read_gold(self, path: Path) -> pd.DataFrame:
        """The gold-labelled rows the judge is calibrated on (`judge.calibration.gold`): a
        JSONL or Parquet file of `input` and `output` (flywheel/examples.py)."""
        from flywheel.examples import read_examples

        return read_examples(path, self.label_format(), split="gold")

    def traffic_plan(self, index: int, evals: pd.DataFrame, seed: int) -> pd.DataFrame:
        """Plan rows (store.PLAN) of kind `traffic` for generation `index`: logged requests
        for the teacher to label, none equal or near to an `evals` request. Default: none."""
        from flywheel import store

        return pd.DataFrame(columns=store.PLAN.names)

    @abstractmethod
    def label_format(self) -> str:
        """How label files (seed, evaluation, gold) hold labels: 'json' or 'exact' (text)."""

    @abstractmethod
    def generate(self, plan: pd.DataFrame, pool: pd.DataFrame, *, generation: str, gate: "Gate",
                 rng: random.Random, teacher: Teacher, cfg: "GenerateConfig", rubric: str, bar=None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """New rows (store.GENERATED) for the plan, each admitted by `gate`, and their true
        labels (store.TRUTH) where the domain knows them (empty otherwise)."""

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
        """Verdicts (store.VERDICTS) from the domain's own checks and the student's answers."""

    @abstractmethod
    def undecided(self, verdicts: pd.DataFrame) -> pd.Series:
        """The rows the committee is asked about, when there is one."""

    @abstractmethod
    def judge_report(self, verdicts: pd.DataFrame, truth: pd.DataFrame) -> dict:
        """judge.json: verdict counts, and the judge's precision and recall where the truth is known."""

    # A Hugging Face student (flywheel/hf_student.py) reads and writes chat turns. These
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


PROTOCOL = tuple(n for n, v in vars(Domain).items() if getattr(v, "__isabstractmethod__", False))
_REGISTRY: dict[str, type[Domain]] = {}


def register(cls: type[Domain]) -> type[Domain]:
    """Add a domain under `cls.name`, after checking it keeps the protocol."""
    where = f"domain {cls.__module__}.{cls.__qualname__}"
    if not (isinstance(cls, type) and issubclass(cls, Domain)):
        raise TypeError(f"{where}: a domain subclasses flywheel.domain.Domain")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"{where}: 'name' must be an identifier, not {name!r}")
    missing = sorted(m for m in PROTOCOL if getattr(cls, m) is getattr(Domain, m))
    if missing:
        raise TypeError(f"{where}: does not implement {', '.join(missing)}")
    for method in PROTOCOL:
        want = list(inspect.signature(getattr(Domain, method)).parameters)
        have = list(inspect.signature(getattr(cls, method)).parameters)
        if have != want:
            raise TypeError(f"{where}: {method}({', '.join(have)}) does not match the protocol's "
                            f"{method}({', '.join(want)})")
    metrics = getattr(cls, "metrics", None)
    if not (isinstance(metrics, tuple) and metrics and all(isinstance(m, str) for m in metrics)):
        raise TypeError(f"{where}: 'metrics' must be a non-empty tuple of metric names")
    if not isinstance(getattr(cls, "teacher_variables", None), frozenset):
        raise TypeError(f"{where}: 'teacher_variables' must be a frozenset of template variables")
    if name in _REGISTRY and _REGISTRY[name].__qualname__ != cls.__qualname__:
        raise TypeError(f"{where}: the name {name!r} is taken by {_REGISTRY[name].__module__}")
    _REGISTRY[name] = cls
    return cls


GROUP = "flywheel.domains"  # the entry-point group domains register in (pyproject.toml)


def _entry_point(name: str) -> None:
    """Load the domain an installed package declares under `name` in the `flywheel.domains`
    entry-point group (the built-in ones included); registering checks its contract."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=GROUP):
        if ep.name != name:
            continue
        try:
            cls = ep.load()
        except (ImportError, AttributeError, TypeError, SyntaxError) as exc:
            raise ConfigError(f"entry point {GROUP}:{name} ({ep.value}): {' '.join(str(exc).split())}") from None
        if _REGISTRY.get(name) is not cls:
            try:
                register(cls)
            except TypeError as exc:
                raise ConfigError(f"entry point {GROUP}:{name} ({ep.value}): {exc}") from None
        return


def available() -> list[str]:
    """The domains installed packages declare, and those registered so far."""
    from importlib.metadata import entry_points

    return sorted({ep.name for ep in entry_points(group=GROUP)} | set(_REGISTRY))


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
    if cfg.name not in _REGISTRY:
        _entry_point(cfg.name)
    if cfg.name not in _REGISTRY:
        _plugin(cfg, Path(root))
    cls = _REGISTRY.get(cfg.name)
    if cls is None:
        raise ConfigError(f"params.yaml: domain.name: {cfg.name!r} is not a domain ({', '.join(available())}, "
                          f"or one registered by {Path(cfg.path) / PLUGIN})")
    if cfg.metric not in cls.metrics:
        raise ConfigError(f"params.yaml: domain.metric: {cfg.metric!r} does not fit domain {cfg.name!r} "
                          f"({cfg.name} scores by {' or '.join(repr(m) for m in cls.metrics)})")
    return cls(cfg, Path(root))


def require_teacher(dom: Domain, teacher) -> None:
    if dom.needs_model_teacher and teacher == "embedded":
        why = getattr(dom, "why_model_teacher", "")
        raise ConfigError(f"params.yaml: generate.teacher: the {dom.name} domain needs an openai or transformers "
                          "teacher" + (f" ({why})" if why else ""))


def require_committee(dom: Domain, committee: list) -> None:
    if dom.needs_committee and not committee:
        raise ConfigError(f"params.yaml: judge.committee: the {dom.name} domain needs at least one judge")


def check(cfg: "Config", root: Path = Path(".")) -> Domain:
    """The domain of a whole config, with what it needs from the other sections (what
    `flywheel check` and `flywheel run` verify first; each stage checks its own part)."""
    dom = get(cfg.domain, root)
    require_teacher(dom, cfg.generate.teacher)
    require_committee(dom, cfg.judge.committee)
    return dom
