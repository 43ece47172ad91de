"""MLflow lineage of one generation: a child run, its datasets, the registered student,
and the champion gate. Only `flows/` talks to MLflow.

Dataset digests are the md5s DVC recorded in `dvc.lock`, and sources are the DVC paths,
so "which data made this model" is answered in DVC's own terms.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flows.student_model import requirements
from flywheel import layout, store
from flywheel.config import Config
from flywheel.health import loop_health

# (context, stage that writes it, path) of the datasets each generation's model used.
DATASETS = [
    ("generated", "generate@{g}", layout.GENERATED, store.GENERATED),
    ("judged", "judge@{g}", layout.VERDICTS, store.VERDICTS),
    ("training", "compose@{g}", layout.TRAIN, store.TRAINSET),
]
STAGE_SECTIONS = ("generate", "judge", "compose", "train", "evaluate", "probe", "expand")


def tracking_uri(cfg: Config, root: Path) -> str:
    return cfg.lineage.tracking_uri or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def setup_mlflow(cfg: Config, root: Path) -> str:
    """Point MLflow at the project's store; artifacts go to <project>/mlruns whatever the cwd.

    Returns a warning ("" if none) when the project's own store keeps the experiment's
    artifacts outside the workspace: MLflow fixes an experiment's artifact location when it
    creates it, so a workspace copied or moved with its mlflow.db still writes model files
    into the original's mlruns/."""
    mlflow.set_tracking_uri(tracking_uri(cfg, root))
    if mlflow.get_experiment_by_name(cfg.lineage.experiment) is None:
        mlflow.create_experiment(cfg.lineage.experiment, artifact_location=(root / "mlruns").resolve().as_uri())
    location = mlflow.set_experiment(cfg.lineage.experiment).artifact_location
    url = urlparse(location)
    if cfg.lineage.tracking_uri or url.scheme != "file" or Path(unquote(url.path)).is_relative_to(root.resolve()):
        return ""
    return (f"MLflow experiment {cfg.lineage.experiment!r} in {root / 'mlflow.db'} keeps its artifacts in "
            f"{unquote(url.path)}, outside this workspace (copied or moved with its mlflow.db?): model files "
            "go there; set lineage.experiment to a new name to keep them here")


def lock_md5s(root: Path) -> dict[str, str]:
    """path -> md5 of every output recorded in dvc.lock."""
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {o["path"]: o["md5"] for s in stages.values() for o in s.get("outs", [])}


def git_revision(root: Path) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _flat(prefix: str, obj) -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: obj}


def find_version(client: MlflowClient, name: str, generation: str):
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    matches = [v for v in versions if v.tags.get("generation") == generation]
    return max(matches, key=lambda v: int(v.version)) if matches else None


def champion(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None


def gate(new: dict, old: dict | None, margin: float) -> tuple[bool, str]:
    """Promote when accuracy is not below the champion's and no skill drops by more than `margin`."""
    if old is None:
        return True, "first model"
    if new["accuracy"] < old["accuracy"]:
        return False, f"accuracy {new['accuracy']:.4f} below champion's {old['accuracy']:.4f}"
    drops = {s: old["per_skill"][s] - a for s, a in new["per_skill"].items() if s in old["per_skill"]}
    worst = max(drops, key=drops.get) if drops else None
    if worst and drops[worst] > margin:
        return False, f"skill {worst} drops {drops[worst]:.4f} (> margin {margin})"
    return True, f"accuracy {new['accuracy']:.4f} >= champion's {old['accuracy']:.4f}, no skill drops > {margin}"


def _plots(root: Path, generation: str, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skills = pd.read_csv(root / layout.path(generation, layout.SKILL_ACCURACY))
    loss = pd.read_csv(root / layout.path(generation, layout.TRAIN_LOSS))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.barh(skills["skill"], skills["accuracy"])
    a.set_xlim(0, 1)
    a.set_title(f"{generation}: evaluation accuracy per skill")
    b.plot(loss["step"], loss["loss"])
    b.set_yscale("log")
    b.set_title(f"{generation}: training loss")
    b.set_xlabel("step")
    fig.tight_layout()
    path = out / f"{generation}-summary.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


def llm_numbers(root: Path, generation: str) -> dict[str, float]:
    """Model calls, cache hits, errors, tokens and seconds of each stage's last run."""
    out = {}
    for stage in ("generate", "judge", "evaluate"):
        path = root / layout.llm_report(generation, stage)
        if path.exists():
            out.update({f"llm.{stage}.{k}": v for k, v in store.read_json(path).items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return out


def log_generation(cfg: Config, root: Path, generation: str, parent_run_id: str | None, tmp: Path) -> dict:
    """Log one generation; returns the version, whether it was promoted, and why."""
    lc = cfg.lineage
    client = MlflowClient()
    md5 = lock_md5s(root)
    index = cfg.index(generation)
    prev = cfg.generation(generation).prev
    model_md5 = md5[str(layout.path(generation, layout.MODEL))]
    existing = find_version(client, lc.registered_model, generation)
    if existing is not None and existing.tags.get("model_md5") == model_md5:
        return {"version": str(existing.version), "promoted": existing.tags.get("gate") == "promoted",
                "alarms": loop_health(root, cfg, generation)["alarms"],
                "reason": existing.tags.get("gate_reason", ""), "logged": False}

    metrics = store.read_json(root / layout.path(generation, layout.METRICS))
    judge = store.read_json(root / layout.path(generation, layout.JUDGE_METRICS))
    profile = store.read_json(root / layout.path(generation, layout.FAILURE_PROFILE))
    train = store.read_table(root / layout.path(generation, layout.TRAIN), store.TRAINSET)
    plan = store.read_table(root / layout.path(generation, layout.PLAN), store.PLAN)
    digests = {}
    with mlflow.start_run(run_name=generation, parent_run_id=parent_run_id, nested=parent_run_id is not None,
                          tags={"generation": generation, "prev": prev}) as run:
        params = {f"{s}.{k}": v for s in STAGE_SECTIONS for k, v in _flat("", getattr(cfg, s).model_dump()).items()}
        params.update(_flat("prepare", cfg.prepare.model_dump()))
        params["seed"] = cfg.seed
        mlflow.log_params(params)
        revision = git_revision(root)
        if revision:
            mlflow.set_tag("git_revision", revision)
        for context, _, name, schema in DATASETS + [("evaluation", "prepare", None, store.EVALSET)]:
            path = layout.EVAL if name is None else layout.path(generation, name)
            digest = md5[str(path)]
            digests[context] = digest
            df = train if context == "training" else store.read_table(root / path, schema)
            mlflow.log_input(mlflow.data.from_pandas(df, source=str(path), name=str(path), digest=digest),
                             context=context)
        values = {"accuracy": metrics["accuracy"]}
        values.update({f"accuracy.{k}": v for k, v in metrics["per_split"].items()})
        values.update({f"skill.{k}": v for k, v in metrics["per_skill"].items()})
        values.update({f"judge.{k}": v for k, v in judge.items() if isinstance(v, (int, float))})
        values.update({f"judge.verdict.{k}": v for k, v in judge["verdicts"].items()})
        values.update({f"probe.failure_rate.{k}": v["failure_rate"] for k, v in profile["skills"].items()})
        values.update({f"probe.{k}": v for k, v in profile.get("categories", {}).items()})
        values.update({f"probe.missing.{k}": v for k, v in profile.get("missing_skills", {}).items()})
        values.update({f"probe.{k}.failure_rate": v["failure_rate"] for k, v in profile.get("splits", {}).items()})
        values.update({f"rows.{k}": int(v) for k, v in train["source"].value_counts().items()})
        values["rows.train"] = len(train)
        values.update({f"expand.{k}": int(v) for k, v in plan["kind"].value_counts().items()})
        for section in ("committee", "calibration"):
            values.update({f"judge.{section}.{k}": v for k, v in judge.get(section, {}).items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)})
        values.update(llm_numbers(root, generation))
        health = loop_health(root, cfg, generation)
        values.update(health["metrics"])
        mlflow.log_dict(health, "health.json")
        mlflow.set_tag("health.alarms", " | ".join(health["alarms"]) or "none")
        mlflow.log_metrics(values, step=index)
        for path in _plots(root, generation, tmp):
            mlflow.log_artifact(str(path), "plots")
        for name in (layout.METRICS, layout.JUDGE_METRICS, layout.FAILURE_PROFILE):
            mlflow.log_artifact(str(root / layout.path(generation, name)), "metrics")
        info = mlflow.pyfunc.log_model(
            name="student", python_model=str(Path(__file__).with_name("student_model.py")),
            artifacts={"model": str(root / layout.path(generation, layout.MODEL)),
                       "tokenizer": str(root / layout.TOKENIZER)},
            pip_requirements=requirements(), registered_model_name=lc.registered_model,
            input_example=None)
    version = str(info.registered_model_version)
    parent = find_version(client, lc.registered_model, prev) if prev != layout.SEED else None
    tags = {"generation": generation, "model_md5": model_md5, "run_id": run.info.run_id,
            "trained_from": str(parent.version) if parent else layout.SEED, "trained_from_generation": prev,
            "metrics": json.dumps({"accuracy": metrics["accuracy"], "per_skill": metrics["per_skill"]}),
            **{f"dataset.{k}.md5": v for k, v in digests.items()},
            **{f"dataset.{k}.path": str(layout.EVAL if n is None else layout.path(generation, n))
               for k, _, n, _ in DATASETS + [("evaluation", "", None, None)]}}
    current = champion(client, lc.registered_model)
    old = json.loads(current.tags["metrics"]) if current is not None and "metrics" in current.tags else None
    promoted, reason = gate(metrics, old, lc.gate_margin)
    tags.update({"gate": "promoted" if promoted else "refused", "gate_reason": reason})
    for k, v in tags.items():
        client.set_model_version_tag(lc.registered_model, version, k, v)
    if promoted:
        client.set_registered_model_alias(lc.registered_model, "champion", version)
    return {"version": version, "promoted": promoted, "reason": reason, "logged": True, "run_id": run.info.run_id,
            "alarms": health["alarms"]}


def chain(client: MlflowClient, name: str, start) -> list:
    """The versions from `start` back to the first, following `trained_from`."""
    out, version = [], start
    while version is not None:
        out.append(version)
        parent = version.tags.get("trained_from")
        version = client.get_model_version(name, parent) if parent and parent != layout.SEED else None
    return out
