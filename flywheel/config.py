"""`params.yaml` -> a validated, typed config. The only module that reads the YAML.

Each stage reads its own section (and `dvc.yaml` lists exactly those sections as the
stage's params, so a change reruns only what it affects). An unknown key, a missing key
or a wrong type is a `ConfigError` whose one-line message names the key.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flywheel.errors import FlywheelError
from flywheel.layout import LOGS
from flywheel.tables import Strategy

PARAMS = Path("params.yaml")


class ConfigError(FlywheelError, ValueError):
    """Bad configuration; the message is one line naming the file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Generation(_Section):
    prev: str = Field(description="the generation this one builds on ('seed' for the first)")


class ModelConfig(_Section):
    n_layer: int = Field(2, ge=1, description="transformer blocks of the student")
    n_embd: int = Field(128, ge=8, description="width of the student")
    n_head: int = Field(4, ge=1, description="attention heads")
    n_positions: int = Field(128, ge=16, description="longest request + call, in tokens")


class PrepareConfig(_Section):
    seed_rows: int = Field(240, ge=1, description="rows of the correctly labelled seed set")
    eval_rows: int = Field(600, ge=1, description="rows of the fixed held-out evaluation set")
    eval_mix: dict[Literal["seen", "new_values", "new_phrasing"], float] = Field(
        description="share of evaluation rows per kind of generalisation")
    plan_rows: int = Field(12000, ge=1, description="requests the first generation asks the teacher for")
    model: ModelConfig = Field(default_factory=ModelConfig)


class BackendConfig(_Section):
    """One model behind the client layer (flywheel/backends/client.py)."""
    backend: Literal["openai", "transformers"] = Field(description="an OpenAI-compatible server or a local model")
    model: str = Field(min_length=1, description="openai: the served model name; transformers: a local path")
    base_url: str = Field("", description="openai: e.g. http://127.0.0.1:11434/v1")
    api_key_env: str = Field("", description="name of the environment variable holding the key (never the key)")
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(256, ge=1, description="longest answer, in tokens")
    response_format: Literal["text", "json_schema"] = Field(
        "text", description="openai: json_schema asks the server to constrain each answer to the JSON schema of "
        "what the stage reads (OpenAI, llama.cpp, vLLM support it); text: free text, parsed after")
    samples: int = Field(1, ge=1, description="committee members drawn from this model (sample 0, 1, ...)")
    concurrency: int = Field(4, ge=1, description="requests in flight (transformers: batch size)")
    rpm: int = Field(0, ge=0, description="requests per minute; 0: no limit")
    tpm: int = Field(0, ge=0, description="tokens per minute; 0: no limit")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, description="retries on 429, 5xx, timeouts, with backoff and jitter")
    backoff_s: float = Field(0.5, ge=0, description="first backoff; doubles each retry")

    @model_validator(mode="after")
    def _url(self) -> "BackendConfig":
        if self.backend == "openai" and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: {self.base_url!r} is not an http(s) URL")
        if self.api_key_env and not self.api_key_env.replace("_", "").isalnum():
            raise ValueError(f"api_key_env: {self.api_key_env!r} is not an environment variable name")
        return self


class Budget(_Section):
    calls: int = Field(0, ge=0, description="model calls per stage run (cache hits are free); 0: no limit")
    tokens: int = Field(0, ge=0, description="prompt + completion tokens per stage run; 0: no limit")


class RedactConfig(_Section):
    default: bool = Field(True, description="the shipped patterns: e-mail, phone, card and IBAN-like numbers "
                                            "(flywheel/redact.py)")
    patterns: dict[str, str] = Field(default_factory=dict, description="kind: regular expression of your own; a "
                                                                       "match becomes <KIND>")

    @model_validator(mode="after")
    def _patterns(self) -> "RedactConfig":
        import re

        for kind, pattern in self.patterns.items():
            if not kind.isidentifier():
                raise ValueError(f"patterns: {kind!r} is not a name (letters, digits, _)")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"patterns.{kind}: not a regular expression ({exc})") from None
        return self


class ToolcallOptions(_Section):
    """What the `toolcall` domain reads (domain.toolcall)."""
    tools: str = Field("", description="a catalog of your own (OpenAI-style function definitions, JSON or YAML) under "
                                       "domain.path; empty: the shipped catalog (docs/your-tools.md)")
    user_file: str = Field("user.jsonl", description="hand-written requests with their calls, the `user` evaluation "
                                                     "split, under domain.path")
    seed_file: str = Field("", description="a catalog of your own: labelled examples to start from, under domain.path "
                                           "(empty: none)")
    vocab_min_count: int = Field(20, ge=1, description="a word the generator wrote this often is a token of the "
                                                       "built-in student; rarer words are copied through markers")


class LlmOptions(_Section):
    """What the `llm` domain (a task of your own) reads (domain.llm)."""
    skills: list[str] = Field(default_factory=list, description="the skills rows are tagged with")
    seed_file: str = Field("seed.jsonl", description="seed examples (JSONL or Parquet) under domain.path")
    eval_file: str = Field("eval.jsonl", description="evaluation examples under domain.path")
    tokenizer_vocab: int = Field(2000, ge=300, description="byte-level BPE vocabulary of the built-in student")


BUILT_IN_OPTIONS = {"toolcall": ToolcallOptions, "llm": LlmOptions}


class DomainConfig(_Section):
    """What every stage that uses the domain reads: its name, folder and metric, and the
    domain's own section (`toolcall`, `llm`, or a plug-in's, named like the domain), which
    dvc.yaml declares as `domain.${domain.name}`: a key of another domain reruns nothing."""
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    name: str = Field("toolcall", min_length=1, description="what a task looks like: a registered domain "
                      "(flywheel/domain.py): toolcall, llm, or one a domain.py under `path` registers")
    path: str = Field("domains/toolcall", description="directory of the domain's templates (and data files)")
    metric: str = Field("ast", min_length=1, description="how a student answer is scored (one the domain has)")
    toolcall: ToolcallOptions = Field(default_factory=ToolcallOptions)
    llm: LlmOptions = Field(default_factory=LlmOptions)

    @model_validator(mode="after")
    def _own_section(self) -> "DomainConfig":
        extra = dict(self.model_extra or {})
        for key, value in extra.items():
            if key != self.name or key in BUILT_IN_OPTIONS:
                raise ValueError(f"{key}: not a key of domain (name, path, metric, and the section of the domain in "
                                 f"use: {self.name})")
            if not isinstance(value, dict):
                raise ValueError(f"{key}: the {key} domain's own section is a mapping")
        if self.name not in BUILT_IN_OPTIONS and self.name not in extra:
            raise ValueError(f"name: {self.name!r} is no built-in domain ({', '.join(BUILT_IN_OPTIONS)}); a domain of "
                             f"your own needs its own section domain.{self.name} (dvc.yaml declares "
                             f"domain.${{domain.name}}; `{self.name}: {{}}` will do)")
        return self


class TrafficConfig(_Section):
    """Request logs (`traffic`): what a deployed model received, labelled by the teacher a
    slice a generation. Only `prepare` and `expand` read this section (and the log under
    logs/), so a log that grows reruns only the generations whose slice it fills."""
    file: str = Field("", description="logged requests (JSONL or Parquet: OpenAI chat-completions records, or "
                                      "`request` text), a file under logs/ (relative to the project); empty: none")
    rows: int = Field(200, ge=0, description="requests a generation takes")
    slice: Literal["sample", "time"] = Field("sample", description=(
        "which: `sample`, the generation's share of a seeded shuffle; `time`, the next by timestamp"))
    redact: RedactConfig = Field(default_factory=RedactConfig, description="what is replaced by a typed placeholder "
                                 "in the requests read from the log and from the domain's labelled files")

    @model_validator(mode="after")
    def _under_logs(self) -> "TrafficConfig":
        parts = Path(self.file).parts
        if self.file and (len(parts) < 2 or parts[0] != LOGS.name or ".." in parts):
            raise ValueError(f"file: {self.file!r} is not a file under logs/ (the folder only prepare and expand "
                             "depend on, so a log that grows reruns only the generations whose slice changed)")
        return self


class GenerateConfig(_Section):
    teacher: Literal["embedded"] | BackendConfig = Field("embedded", description="teacher backend")
    template: str = Field("teacher.jinja", description="teacher prompt, under domain.path")
    budget: Budget = Field(default_factory=Budget)
    error_rate: float = Field(0.08, ge=0, le=1, description="teacher label-error rate of a plain row")
    skill_error_rates: dict[str, float] = Field(
        default_factory=lambda: {"relative_dates": 0.3, "unit_words": 0.25, "two_calls": 0.3, "no_call": 0.2,
                                 "booleans": 0.2},
        description="label-error rate of rows with that skill (the highest applies)")
    self_consistency: list[str] = Field(default_factory=lambda: ["skill_synth"], description=(
        "plan kinds whose rows the teacher labels twice, keeping a row only when both labels agree (the "
        "expensive check, spent where targeting aims: add error_driven and borderline)"))
    writer: str = Field("writer.jinja", description="toolcall with a catalog of your own: the prompt that has the "
                                                    "teacher model write a request and its calls, under domain.path")


class CalibrationConfig(_Section):
    gold: str = Field("", description="gold-labelled JSONL under domain.path; empty: no calibration")
    min_precision: float = Field(0.0, ge=0, le=1, description="refuse a judge whose precision is lower")
    min_recall: float = Field(0.0, ge=0, le=1, description="refuse a judge whose recall is lower")


class JudgeConfig(_Section):
    committee: list[BackendConfig] = Field(
        default_factory=list, description="LLM judges asked where the checks cannot decide; empty: checks only")
    consensus: float = Field(0.5, gt=0, le=1, description="share of the committee a verdict needs; else held out")
    template: str = Field("judge.jinja", description="judge prompt, under domain.path")
    rubric: str = Field("rubric.md", description="rubric shown to the judge, under domain.path")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    budget: Budget = Field(default_factory=Budget)
    use_student: bool = Field(True, description="compare every label with the current student")
    repair: bool = Field(True, description="let the verifier correct values it can ground uniquely")
    batch_size: int = Field(256, ge=1, description="student decoding batch")
    verify: bool = Field(True, description=(
        "false: no checks, no committee; every label the teacher gave is kept as it came (the no-judge arm of "
        "experiments/loop.py); the truth still measures what was kept"))
    committee_rows: int = Field(0, ge=0, description=(
        "most undecided rows put to the committee per run, targeted rows (error_driven, borderline, skill_synth, "
        "skill_weighted) first; the rest keep the embedded verdict. 0: every undecided row"))


class ComposeConfig(_Section):
    policy: Literal["accumulate", "replace", "accumulate-subsample"] = "accumulate"
    budget: int = Field(0, ge=0, description="training-set size for accumulate-subsample")
    min_seed_share: float = Field(0.0, ge=0, le=1, description="floor on the share of seed rows, any policy")
    dev_share: float = Field(0.1, ge=0, lt=1, description="share of each generation's new rows held out for the probe")
    mastered_weight: float = Field(1.0, ge=0, le=1, description="share of mastered rows kept in the next training set")


class TrainConfig(_Section):
    steps: int = Field(1000, ge=1, description="optimizer steps per generation")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    threads: int = Field(2, ge=1, description="threads of the student's matrix products; part of the numerics (flywheel/kernels.py)")
    log_every: int = Field(20, ge=1, description="steps between loss points in the plot")
    prefix_grad: bool = Field(True, description="a Hugging Face student's gradients through the prompt prefix its "
                                                "rows share (the catalog); false: that prefix runs without them, "
                                                "cheaper, same loss, a gradient without the prefix's path "
                                                "(docs/student.md)")


class LoraConfig(_Section):
    r: int = Field(0, ge=0, description="LoRA rank; 0: full fine-tuning")
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=list,
                                      description="module names to adapt (q_proj, v_proj, ...); empty: peft's default")


class StudentConfig(_Section):
    """The student: the built-in GPT-2 (`model: ""`, sized by prepare.model) or a Hugging
    Face causal LM of your own (flywheel/student/hf.py, docs/student.md)."""
    kind: str = Field("", description="the student kind (flywheel/student/'s registry): '' picks `hf` when `model` "
                                      "is set, else `builtin`")
    model: str = Field("", description="'': built-in; a folder under models/ (save_pretrained); or a hub id")
    revision: str = Field("", description="with a hub id: the commit to load")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    max_length: int = Field(512, ge=8, description="longest prompt + answer in tokens")


class BfclConfig(_Section):
    categories: list[Literal["simple_python", "multiple", "parallel", "parallel_multiple", "live_simple",
                             "live_multiple", "live_parallel", "live_parallel_multiple", "irrelevance",
                             "live_irrelevance"]] = Field([], description=(
        "BFCL's single-turn categories the student is also scored on (flywheel/bfcl.py, docs/bfcl.md); "
        "empty: off"))
    per_category: int = Field(20, ge=0, description="questions per category, a seeded sample; 0: all")
    seed: int = Field(0, description="the sample's seed")
    max_new_tokens: int = Field(128, ge=1, description="the longest answer a question gets")


class EvaluateConfig(_Section):
    batch_size: int = Field(256, ge=1)
    max_new_tokens: int = Field(64, ge=0, description="the longest answer; 0: the longest the student trained on, plus a margin")
    bfcl: BfclConfig = BfclConfig()


class ProbeConfig(_Section):
    batch_size: int = Field(256, ge=1)
    train_rows: int = Field(4000, ge=0, description=(
        "training rows the probe answers, a seeded sample of the pool (which grows every generation under "
        "accumulate); every dev row is answered. 0: every training row"))
    borderline_quantile: float = Field(0.8, gt=0, lt=1, description=(
        "right answers above this perplexity quantile (of the right answers) are borderline, the rest mastered"))
    samples: int = Field(0, ge=0, description=(
        "sampled answers per row besides the greedy one; the share right is the row's success rate, which "
        "expand.targets: learnable reads. 0: greedy only"))
    temperature: float = Field(1.0, gt=0, description="sampling temperature of those answers")


class ExpandConfig(_Section):
    budget: int = Field(12000, ge=0, description="requests planned for the next generation")
    variations_per_failure: int = Field(3, ge=1, description="error_driven: new requests per failing row")
    failure_order: Literal["hardest", "spread"] = Field(
        "hardest", description="error_driven: which failures first: highest loss, or each skill combination in turn "
                               "(highest loss first within it)")
    targets: Literal["failed", "learnable"] = Field(
        "failed", description="error_driven: parents are greedy failures, or rows whose success rate over "
                              "probe.samples answers is strictly between 0 and 1 (needs probe.samples > 0)")
    group_cap: float = Field(1.0, gt=0, le=1, description=(
        "error_driven: the largest share of its rows one skill combination may take; 1: no cap"))
    vary_functions: bool = Field(False, description=(
        "error_driven: a child draws a new function combination for one of its parent's skills instead of "
        "keeping the parent's functions (the phrasing and values are new either way)"))
    broad_above: float = Field(1.0, ge=0, le=1, description=(
        "while more than this share of the probe's dev rows fail, every targeted share goes to random "
        "(broad data first); 1: never"))
    allocate: Literal["loss", "progress"] = Field("loss", description=(
        "error_driven: rows go to failures in `failure_order` (loss), or are split across failure clusters (skill "
        "combinations) by the learning progress the last plan's rows bought there (progress)"))
    keep_factors: bool = Field(True, description=(
        "error_driven and borderline: a child keeps the factors of its parent whose dev failure rate stands out "
        "(the failure analysis) and varies the rest; false: only the parent's functions and skills"))
    strategy: dict[Strategy, float] = Field(
        default_factory=lambda: {"random": 1.0},
        description="strategies and their shares of the budget (normalised); what one cannot use goes to random")

    @model_validator(mode="after")
    def _weights(self) -> "ExpandConfig":
        if not self.strategy or any(w < 0 for w in self.strategy.values()) or sum(self.strategy.values()) <= 0:
            raise ValueError("strategy: give at least one strategy a positive weight (and none a negative one)")
        return self


class HealthConfig(_Section):
    """Loop-health alarms (read by the flow, logged to MLflow)."""
    diversity_drop: float = Field(0.2, ge=0, le=1, description="alarm when distinct bigrams of new rows fall by this share")
    regression: float = Field(0.1, ge=0, le=1, description="alarm when a learned skill falls this far below its best")
    learned_at: float = Field(0.5, ge=0, le=1, description="a skill counts as learned from this accuracy on")


class LineageConfig(_Section):
    tracking_uri: str = Field("", description="MLflow tracking URI; empty: sqlite:///<project>/mlflow.db")
    experiment: str = Field("flywheel", description="one MLflow experiment per flywheel project")
    registered_model: str = Field("flywheel-student", description="registry name of the student")
    gate_margin: float = Field(0.05, ge=0, le=1, description="largest per-skill accuracy drop a champion may have")


class PublishConfig(_Section):
    git_commit: bool = Field(True, description="commit params.yaml, dvc.lock and metrics after each generation")
    git_tag: bool = Field(True, description="tag that commit gen-XXX")
    dvc_push: bool = Field(True, description="dvc push each generation's data to the default remote")


class Config(_Section):
    seed: int
    domain: DomainConfig = Field(default_factory=DomainConfig)
    traffic: TrafficConfig = Field(default_factory=TrafficConfig)
    generations: dict[str, Generation]
    prepare: PrepareConfig
    generate: GenerateConfig
    judge: JudgeConfig
    compose: ComposeConfig
    train: TrainConfig
    student: StudentConfig = Field(default_factory=StudentConfig)
    evaluate: EvaluateConfig
    probe: ProbeConfig
    expand: ExpandConfig
    health: HealthConfig = Field(default_factory=HealthConfig)
    lineage: LineageConfig = Field(default_factory=LineageConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)

    @model_validator(mode="after")
    def _chain(self) -> "Config":
        seen = ["seed"]
        for name, gen in self.generations.items():
            if gen.prev not in seen:
                raise ValueError(f"generations.{name}.prev: {gen.prev!r} is not 'seed' or an earlier generation")
            seen.append(name)
        return self

    def generation(self, name: str) -> Generation:
        if name not in self.generations:
            raise ConfigError(f"{PARAMS}: generation {name!r} is not in generations ({', '.join(self.generations)})")
        return self.generations[name]

    def index(self, name: str) -> int:
        self.generation(name)
        return list(self.generations).index(name)


def _one_line(err: ValidationError, path: Path) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if not key.isprintable():  # a key with a newline or control character: show it quoted, on one line
        key = repr(key)
    msg = " ".join(first["msg"].removeprefix("Value error, ").split())
    named = re.match(r"([A-Za-z_][\w.]*): (.*)", msg) if first["type"] == "value_error" else None
    if named:  # a section's own check names the key it is about: `traffic` + `file: ...` -> `traffic.file: ...`
        key, msg = (f"{key}.{named.group(1)}" if key else named.group(1)), named.group(2)
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{path}: {key + ': ' if key else ''}{msg}{extra}"


def _sections(path: Path, missing: str = "not found (run from the project root)") -> dict:
    """A YAML file of sections (params.yaml, a profile) as a dict; a one-line ConfigError."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def load(path: Path = PARAMS) -> Config:
    raw = _sections(path)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, Path(path))) from None


# -- a profile on top of params.yaml (`flywheel run --params FILE`) ---------------------------

REPLACED_WHOLE = ("generations", "strategy")  # a merge would keep entries the override means to drop


def merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, section by section; `generations` and `strategy` are
    replaced whole. `base` is left as it was."""
    out = copy.deepcopy(base)
    _merge_into(out, over)
    return out


def _merge_into(doc, over: dict, prefix: str = "") -> list[str]:
    """`over` merged into `doc` in place (a dict, or ruamel's commented mapping, whose
    comments stay); the keys it changed."""
    changed = []
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(doc.get(k), dict) and k not in REPLACED_WHOLE:
            changed += _merge_into(doc[k], v, f"{prefix}{k}.")
        elif doc.get(k, _MISSING) != v:
            doc[k] = v
            changed.append(prefix + k)
    return changed


_MISSING = object()


def apply_profile(profile: Path, path: Path = PARAMS) -> list[str]:
    """Write `profile`'s sections over params.yaml (its comments kept), validated first and
    replaced by rename, so a bad profile changes nothing. Returns the keys that changed.
    DVC reads params.yaml, so the stages a profile touches rerun and the lock records it."""
    import io

    from ruamel.yaml import YAML

    over = _sections(profile, "not found")
    load(path)  # params.yaml itself is valid before anything is written
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096  # a flow-style list stays on its line
    doc = rt.load(Path(path).read_text(encoding="utf-8"))
    changed = _merge_into(doc, over)
    out = io.StringIO()
    rt.dump(doc, out)
    try:
        Config.model_validate(yaml.safe_load(out.getvalue()))
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, Path(profile))) from None
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tmp.write_text(out.getvalue(), encoding="utf-8")
    tmp.replace(path)
    return changed

# -- what a stage may read ------------------------------------------------------------------

DVC_YAML = Path("dvc.yaml")
ALWAYS = ("generations",)  # every per-generation stage is a `foreach` over them


def declared_params(stage: str, dvc_yaml: Path = DVC_YAML) -> list[str]:
    """The params.yaml keys `stage`'s dvc.yaml entry lists (`seed`, `judge.rubric`, ...)."""
    try:
        stages = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8"))["stages"]
        entry = stages[stage]
    except FileNotFoundError:
        raise ConfigError(f"{dvc_yaml}: not found (run from the project root)") from None
    except (KeyError, TypeError):
        raise ConfigError(f"{dvc_yaml}: no stage {stage!r}") from None
    keys = []
    for item in entry.get("do", entry).get("params", []):
        if isinstance(item, str):
            keys.append(item)
        elif isinstance(item, dict):  # {params.yaml: [keys]}
            keys += [k for v in item.values() for k in (v or [])]
    return keys


class _All:
    """Marker: the whole subtree is declared."""


def _tree(keys: list[str]) -> dict:
    tree: dict = {}
    for key in keys:
        node = tree
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if node is _All:
                break
        else:
            node[last] = _All
    return tree


class ConfigView:
    """A stage's view of the config: reading a section or key that the stage's dvc.yaml
    entry does not declare as a param is a ConfigError naming it, so an undeclared read
    (which `dvc repro` would not notice when that key changes) fails the first time it runs."""

    def __init__(self, obj, tree: dict, stage: str, prefix: str = ""):
        self._obj, self._tree, self._stage, self._prefix = obj, tree, stage, prefix

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._obj, name)
        if callable(value) and not isinstance(value, BaseModel):
            return value  # Config.generation / Config.index read `generations`
        key = f"{self._prefix}{name}"
        sub = self._tree.get(name)
        if sub is None:
            raise ConfigError(f"{PARAMS}: stage {self._stage} reads {key}, which its dvc.yaml params do not "
                              f"declare (add {key!r} to stages.{self._stage}.params)")
        return value if sub is _All or not isinstance(value, BaseModel) else \
            ConfigView(value, sub, self._stage, f"{key}.")

    def __repr__(self) -> str:
        return f"ConfigView({self._stage}: {self._prefix or 'params'})"


def _resolved(key: str, cfg: Config) -> str:
    """A declared key with DVC's `${section.key}` templating filled in from the config
    (`domain.${domain.name}` -> `domain.toolcall`), as DVC itself resolves it."""
    import re

    def value(match: re.Match) -> str:
        node = cfg
        for part in match.group(1).split("."):
            node = getattr(node, part)
        return str(node)

    return re.sub(r"\$\{([\w.]+)\}", value, key)


def stage_view(cfg: Config, stage: str, dvc_yaml: Path = DVC_YAML) -> ConfigView:
    keys = [_resolved(k, cfg) for k in declared_params(stage, dvc_yaml)]
    return ConfigView(cfg, _tree(keys + list(ALWAYS)), stage)
