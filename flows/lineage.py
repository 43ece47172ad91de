"""MLflow lineage of one generation: a child run, its datasets, the registered student,
and the champion gate. Only `flows/` talks to MLflow.

Dataset digests are the md5s DVC recorded in `dvc.lock`, and sources are the DVC paths,
so "which data made this model" is answered in DVC's own terms. `log_generation` is the
one part that talks to MLflow; what it logs comes from small pure functions over the
generation's results (results.py): `run_params`, `metric_values`, `version_tags`, `gate`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flows.health import loop_health
from flows.results import Results, lock_md5s, lock_stages
from flows.student_model import requirements
from flywheel import domain, factor_rates, layout, store, tables
from flywheel import student
from flywheel.config import Config

# (context, stage that writes it, path) of the datasets each generation's model used.
DATASETS = [
    ("generated", "generate@{g}", layout.GENERATED, tables.GENERATED),
    ("judged", "judge@{g}", layout.VERDICTS, tables.VERDICTS),
    ("training", "compose@{g}", layout.TRAIN, tables.TRAINSET),
]
STAGE_SECTIONS = ("generate", "judge", "compose", "train", "evaluate", "probe", "expand")


def tracking_uri(cfg: Config, root: Path) -> str:
    return cfg.lineage.tracking_uri or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def setup_mlflow(cfg: Config, root: Path) -> str:
    """Point MLflow at the project's store; artifacts go to <project>/mlruns whatever the cwd
    (with `lineage.tracking_uri`: wherever that server keeps them).

    Returns a warning ("" if none) when the project's own store keeps the experiment's
    artifacts outside the workspace: MLflow fixes an experiment's artifact location when it
    creates it, so a workspace copied or moved with its mlflow.db still writes model files
    into the original's mlruns/."""
    mlflow.set_tracking_uri(tracking_uri(cfg, root))
    if mlflow.get_experiment_by_name(cfg.lineage.experiment) is None:
        # A tracking server picks the artifact store (its --artifacts-destination, which other
        # machines reach); a folder of this workspace would vanish with a worker's clone.
        own = None if cfg.lineage.tracking_uri else (root / "mlruns").resolve().as_uri()
        mlflow.create_experiment(cfg.lineage.experiment, artifact_location=own)
    location = mlflow.set_experiment(cfg.lineage.experiment).artifact_location
    url = urlparse(location)
    if cfg.lineage.tracking_uri or url.scheme != "file" or Path(unquote(url.path)).is_relative_to(root.resolve()):
        return ""
    return (f"MLflow experiment {cfg.lineage.experiment!r} in {root / 'mlflow.db'} keeps its artifacts in "
            f"{unquote(url.path)}, outside this workspace (copied or moved with its mlflow.db?): model files "
            "go there; set lineage.experiment to a new name to keep them here")


__all__ = ["lock_md5s", "log_generation", "champion_gate", "chain", "champion", "setup_mlflow"]


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


def champion_gate(new: dict, old: dict | None, margin: float, gated: tuple[str, ...] = ("user",)) -> tuple[bool, str]:
    """The champion gate: promote when accuracy is not below the champion's, and no skill
    and no gated split (the domain's `gated_splits`: the hand-written `user` requests)
    drops by more than `margin`; where both were scored on BFCL (evaluate.bfcl), neither
    of its summaries drops by more than `margin` either (general tool calling must not fall
    while the flywheel specialises the student)."""
    if old is None:
        return True, "first model"
    if new["accuracy"] < old["accuracy"]:
        return False, f"accuracy {new['accuracy']:.4f} below champion's {old['accuracy']:.4f}"
    for split in gated:
        was, now = old.get("per_split", {}).get(split), new.get("per_split", {}).get(split)
        if was is not None and now is not None and was - now > margin:
            return False, f"split {split} drops {was - now:.4f} (> margin {margin})"
    for summary in ("non_live", "live"):
        was, now = old.get("bfcl", {}).get(summary), new.get("bfcl", {}).get(summary)
        if was is not None and now is not None and was - now > margin:
            return False, f"BFCL {summary} drops {was - now:.4f} (> margin {margin})"
    drops = {s: old["per_skill"][s] - a for s, a in new["per_skill"].items() if s in old["per_skill"]}
    worst = max(drops, key=drops.get) if drops else None
    if worst and drops[worst] > margin:
        return False, f"skill {worst} drops {drops[worst]:.4f} (> margin {margin})"
    return True, f"accuracy {new['accuracy']:.4f} >= champion's {old['accuracy']:.4f}, no skill or gated split " \
                 f"drops > {margin}"


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


def dataset_paths(generation: str) -> dict[str, str]:
    """context -> DVC path of the datasets a generation's model was made and measured with."""
    out = {context: str(layout.path(generation, name)) for context, _, name, _ in DATASETS}
    out["evaluation"] = str(layout.EVAL)
    return out


def run_params(cfg: Config) -> dict:
    """The params of every stage, flattened (`train.lr`, `prepare.model.n_layer`, ...)."""
    params = {f"{s}.{k}": v for s in STAGE_SECTIONS for k, v in _flat("", getattr(cfg, s).model_dump()).items()}
    params.update(_flat("prepare", cfg.prepare.model_dump()))
    params.update(_flat("domain", cfg.domain.model_dump()))
    params["seed"] = cfg.seed
    return params


def metric_values(r: Results, health: dict) -> dict[str, float]:
    """Every number of a generation, named for MLflow (logged with step = generation index)."""
    values = {"accuracy": r.metrics["accuracy"]}
    values.update({f"accuracy.{k}": v for k, v in r.metrics["per_split"].items()})
    values.update({f"skill.{k}": v for k, v in r.metrics["per_skill"].items()})
    bfcl = r.metrics.get("bfcl", {})
    values.update({f"bfcl.{k}": v for k, v in bfcl.get("per_category", {}).items()})
    values.update({f"bfcl.{k}": bfcl[k] for k in ("non_live", "live") if k in bfcl})
    values.update({f"judge.{k}": v for k, v in r.judge.items() if isinstance(v, (int, float))})
    values.update({f"judge.verdict.{k}": v for k, v in r.judge["verdicts"].items()})
    values.update({f"probe.failure_rate.{k}": v["failure_rate"] for k, v in r.profile["skills"].items()})
    values.update({f"probe.{k}": v for k, v in r.profile.get("categories", {}).items()})
    values.update({f"probe.missing.{k}": v for k, v in r.profile.get("missing_skills", {}).items()})
    values.update({f"probe.{k}.failure_rate": v["failure_rate"] for k, v in r.profile.get("splits", {}).items()})
    dev_factors = r.profile.get("dev_factors", {})
    values.update({f"probe.factor.{k}.failure_rate": v["failure_rate"] for k, v in dev_factors.items()})
    values["probe.factors_standing_out"] = sum(v["stands_out"] for v in dev_factors.values())
    if "user" in r.factor_failures:  # do the dev split's factor failures predict the user split's?
        agree = factor_rates.agreement(dev_factors, r.factor_failures["user"])
        values["factors.dev_user.n"] = agree["n"]
        if agree["pearson"] is not None:
            values["factors.dev_user.pearson"] = agree["pearson"]
    values.update({f"rows.{k}": int(v) for k, v in r.train["source"].value_counts().items()})
    values.update({f"generate.rows.{k}": int(v) for k, v in r.generate.get("sources", {}).items()})
    values.update({f"generate.redacted.{k}": int(v) for k, v in r.generate.get("redacted", {}).items()})
    values.update({f"probe.source.{k}.failure_rate": v["failure_rate"] for k, v in r.profile.get("sources", {}).items()})
    values["rows.train"] = len(r.train)
    values.update({f"expand.{k}": int(v) for k, v in r.plan["kind"].value_counts().items()})
    for section in ("committee", "calibration"):
        values.update({f"judge.{section}.{k}": v for k, v in r.judge.get(section, {}).items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
    values.update(health["metrics"])
    return values


def version_tags(r: Results, *, model_md5: str, run_id: str, parent_version: str | None,
                 digests: dict[str, str]) -> dict[str, str]:
    """The registered version's lineage: its generation, datasets (path + md5), the version
    it was trained from, and the metrics the next gate compares against."""
    return {"generation": r.generation, "model_md5": model_md5, "run_id": run_id,
            "trained_from": parent_version or layout.SEED, "trained_from_generation": r.prev,
            "metrics": json.dumps({"accuracy": r.metrics["accuracy"], "per_skill": r.metrics["per_skill"],
                                   "per_split": r.metrics["per_split"]}),
            **{f"dataset.{k}.md5": v for k, v in digests.items()},
            **{f"dataset.{k}.path": v for k, v in dataset_paths(r.generation).items()}}


def base_artifact(client: MlflowClient, experiment_id: str, folder: Path, md5: str) -> str:
    """The artifact URI of the base model with dvc.lock digest `md5`: logged once, in a run of
    its own tagged `flywheel.base_md5`, which every LoRA version built on it names (its
    model_config `base_uri`) instead of carrying a copy."""
    found = client.search_runs([experiment_id], filter_string=f"tags.`flywheel.base_md5` = '{md5}'", max_results=1)
    if found:
        return f"{found[0].info.artifact_uri}/base"
    run = client.create_run(experiment_id, run_name=f"base {folder.name}",
                            tags={"flywheel.base_md5": md5, "flywheel.base": folder.name})
    client.log_artifacts(run.info.run_id, str(folder), "base")
    client.set_terminated(run.info.run_id)
    return f"{run.info.artifact_uri}/base"


def base_md5(root: Path, generation: str) -> str:
    """The md5 dvc.lock records for models/ (the base model folder) as train's dependency."""
    lock = lock_stages(root).get(f"train@{generation}", {})
    return next((d["md5"] for d in lock.get("deps", []) if d["path"] == "models"), "")


def log_student(client: MlflowClient, experiment_id: str, folder: Path, root: Path, *, domain: dict,
                base_md5: str, registered_model: str, copy_base: bool = False):
    """The student checkpoint `folder` as a pyfunc model version (in the active run). A LoRA
    adapter names its base by digest (`base_artifact`, one copy per digest) instead of
    carrying it; `copy_base` carries it instead (what bench/registry_size.py compares)."""
    own = student.origin(folder)
    artifacts = {"model": str(folder)}
    model_config: dict = {"domain": domain}
    if own and own["adapter"] and (root / own["base"]).is_dir():
        if copy_base:
            artifacts["base"] = str((root / own["base"]).resolve())  # a linked base: its files, not the link
        else:
            model_config["base_md5"] = base_md5
            model_config["base_uri"] = base_artifact(client, experiment_id, root / own["base"], base_md5)
    return mlflow.pyfunc.log_model(
        name="student", python_model=str(Path(__file__).with_name("student_model.py")),
        artifacts=artifacts, model_config=model_config,
        pip_requirements=requirements(adapter=bool(own and own["adapter"])),
        registered_model_name=registered_model, input_example=None)


def log_generation(cfg: Config, root: Path, r: Results, parent_run_id: str | None, tmp: Path) -> dict:
    """Log one generation to MLflow and apply the gate; returns the version, whether it was
    promoted and why, and the loop-health alarms."""
    lc = cfg.lineage
    client = MlflowClient()
    md5 = lock_md5s(root)
    generation = r.generation
    model_md5 = md5[str(layout.path(generation, layout.MODEL))]
    health = loop_health(r, cfg.health)
    existing = find_version(client, lc.registered_model, generation)
    if existing is not None and existing.tags.get("model_md5") == model_md5:
        return {"version": str(existing.version), "promoted": existing.tags.get("gate") == "promoted",
                "alarms": health["alarms"], "reason": existing.tags.get("gate_reason", ""), "logged": False}

    paths = dataset_paths(generation)
    digests = {context: md5[path] for context, path in paths.items()}
    frames = {"training": r.train}
    with mlflow.start_run(run_name=generation, parent_run_id=parent_run_id, nested=parent_run_id is not None,
                          tags={"generation": generation, "prev": r.prev}) as run:
        mlflow.log_params(run_params(cfg))
        revision = git_revision(root)
        if revision:
            mlflow.set_tag("git_revision", revision)
        for context, _, _, schema in DATASETS + [("evaluation", "prepare", None, tables.EVALSET)]:
            df = frames.get(context)
            if df is None:
                df = store.read_table(root / paths[context], schema)
            mlflow.log_input(mlflow.data.from_pandas(df, source=paths[context], name=paths[context],
                                                     digest=digests[context]), context=context)
            if context == "generated" and (df["source"] == tables.TRAFFIC).any():  # this generation's traffic slice
                logged = df[df["source"] == tables.TRAFFIC]
                mlflow.log_input(mlflow.data.from_pandas(logged, source=paths[context], name=f"{paths[context]}#traffic",
                                                         digest=tables.row_id(*logged["id"])[:16]), context="traffic")
        mlflow.log_dict(health, "health.json")
        mlflow.set_tag("health.alarms", " | ".join(health["alarms"]) or "none")
        mlflow.log_metrics(metric_values(r, health) | llm_numbers(root, generation), step=r.index)
        for path in _plots(root, generation, tmp):
            mlflow.log_artifact(str(path), "plots")
        for name in (layout.METRICS, layout.JUDGE_METRICS, layout.FAILURE_PROFILE, layout.FACTOR_FAILURES,
                     layout.BFCL_ACCURACY):
            mlflow.log_artifact(str(root / layout.path(generation, name)), "metrics")
        own = student.origin(root / layout.path(generation, layout.MODEL))
        info = log_student(client, run.info.experiment_id, root / layout.path(generation, layout.MODEL), root,
                           domain=cfg.domain.model_dump(), base_md5=base_md5(root, generation),
                           registered_model=lc.registered_model)
    version = str(info.registered_model_version)
    parent = find_version(client, lc.registered_model, r.prev) if r.prev != layout.SEED else None
    tags = version_tags(r, model_md5=model_md5, run_id=run.info.run_id,
                        parent_version=str(parent.version) if parent else None, digests=digests)
    if own:
        tags.update({"student.base": own["base"], "student.revision": own["revision"] or "local",
                     "student.adapter": str(own["adapter"]).lower(),
                     "student.base_md5": base_md5(root, generation)})
    current = champion(client, lc.registered_model)
    old = json.loads(current.tags["metrics"]) if current is not None and "metrics" in current.tags else None
    promoted, reason = champion_gate(r.metrics, old, lc.gate_margin, domain.get(cfg.domain, root).gated_splits)
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
