"""A generation's results, read once from the files its stages wrote and handed to
everything the flow reports: MLflow lineage (lineage.py), the loop-health measures
(health.py), the Prefect markdown summary and the CLI table (report.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from flywheel import layout, store, tables
from flywheel.config import Config


def lock_stages(root: Path) -> dict[str, dict]:
    """dvc.lock's stages (`judge@gen-001` -> its deps, params and outs): the one reader of
    the lock (flows/recover.py only checks that its text loads)."""
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def lock_md5s(root: Path) -> dict[str, str]:
    """path -> md5 of every output recorded in dvc.lock."""
    return {o["path"]: o["md5"] for s in lock_stages(root).values() for o in s.get("outs", [])}


def new_rows(root: Path, generation: str) -> pd.DataFrame:
    """The rows a generation added (seed: the seed set): its verdicts that kept a label."""
    if generation == layout.SEED:
        return store.read_table(root / layout.path(layout.SEED, layout.TRAIN), tables.TRAINSET)
    verdicts = store.read_table(root / layout.path(generation, layout.VERDICTS), tables.VERDICTS)
    kept = verdicts[verdicts["final_label"].notna()]
    return kept.assign(label=kept["final_label"])


@dataclass(frozen=True)
class Results:
    generation: str
    index: int
    prev: str
    metrics: dict  # metrics.json
    judge: dict  # judge.json
    generate: dict  # generate.json
    profile: dict  # failure_profile.json
    factor_failures: dict  # factor_failures.json (evaluation splits; {} where it was not made)
    train: pd.DataFrame
    plan: pd.DataFrame
    new: pd.DataFrame  # rows this generation added
    before: pd.DataFrame  # rows the previous generation added
    prev_probe: pd.DataFrame
    history: list[dict]  # metrics.json of every generation up to this one


def read(root: Path, cfg: Config, generation: str) -> Results:
    names = list(cfg.generations)
    prev = cfg.generation(generation).prev

    def path(name: str) -> Path:
        return root / layout.path(generation, name)

    return Results(
        generation=generation, index=cfg.index(generation), prev=prev,
        metrics=store.read_json(path(layout.METRICS)), judge=store.read_json(path(layout.JUDGE_METRICS)),
        generate=store.read_json(path(layout.GENERATE_METRICS)),
        profile=store.read_json(path(layout.FAILURE_PROFILE)),
        factor_failures=store.read_json(path(layout.FACTOR_FAILURES)) if path(layout.FACTOR_FAILURES).exists() else {},
        train=store.read_table(path(layout.TRAIN), tables.TRAINSET), plan=store.read_table(path(layout.PLAN), tables.PLAN),
        new=new_rows(root, generation), before=new_rows(root, prev),
        prev_probe=store.read_table(root / layout.path(prev, layout.PROBE), tables.PROBE),
        history=[store.read_json(root / layout.path(g, layout.METRICS)) for g in names[: names.index(generation) + 1]])


def made(root: Path, cfg: Config) -> list[str]:
    """The generations whose evaluation exists (what can be recorded and reported)."""
    return [g for g in cfg.generations if (root / layout.path(g, layout.METRICS)).exists()]
