"""MLflow unreachable during a real `flywheel run` (conftest's `unkilled_run`): every DVC
stage still runs and is published (git), and the run ends with exit status 1 and a
message saying what to do. Then MLflow is back, but its SQLite database is locked by
another process: `flywheel lineage --backfill` fails with one line and records nothing.
Once the lock is gone the backfill records the generation with the same dataset md5s as
dvc.lock, and a second backfill records nothing twice. (A run's path for a locked
database is the same as for an unreachable server: any exception from MLflow; a second
full run to show it again costs ~75 s.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from conftest import run
from flows.lineage import lock_md5s

FLYWHEEL = str(Path(sys.executable).parent / "flywheel")


def _set_tracking(project: Path, uri: str) -> None:
    cfg = yaml.safe_load((project / "params.yaml").read_text())
    cfg["lineage"]["tracking_uri"] = uri
    (project / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _versions(project: Path) -> dict[str, dict]:
    script = ("import json, mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); "
              "c = mlflow.MlflowClient(); "
              "print(json.dumps({v.tags.get('generation'): v.tags for v in "
              "c.search_model_versions(\"name='flywheel-student'\")}))")
    return yaml.safe_load(run([sys.executable, "-c", script], project).stdout.strip().splitlines()[-1])


def test_runs_finish_without_mlflow_and_backfill_records_them_later(unkilled_run):
    # 1. MLflow's server was unreachable for the whole run (conftest's `unkilled_run`).
    project, proc = unkilled_run.project, unkilled_run.proc
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "flywheel lineage --backfill" in proc.stderr and "gen-000" in proc.stderr
    stages = set(yaml.safe_load((project / "dvc.lock").read_text())["stages"])
    assert {f"{s}@gen-000" for s in ("generate", "judge", "compose", "train", "evaluate", "probe",
                                     "expand")} <= stages
    assert "flywheel: gen-000" in run(["git", "log", "--format=%s"], project).stdout  # published
    assert not (project / "mlflow.db").exists()

    # 2. MLflow back (the project's SQLite store, created empty here) but its database
    #    locked by another process: the backfill fails with one line and records nothing.
    _set_tracking(project, "")
    assert _versions(project) == {}
    locker = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time; c = sqlite3.connect('mlflow.db', isolation_level=None); "
        "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(900)")],
        cwd=project, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        locked = run([FLYWHEEL, "lineage", "--backfill"], project, check=False)
    finally:
        locker.kill()
        locker.wait()
    lines = [ln for ln in locked.stderr.splitlines() if ln.strip()]
    assert locked.returncode == 2 and len(lines) == 1 and "backfill failed" in lines[0], locked.stderr[-2000:]
    assert "locked" in lines[0]
    assert _versions(project) == {}

    # 3. Unlocked: the backfill records gen-000 with dvc.lock's md5s; a second one changes nothing.
    back = run([FLYWHEEL, "lineage", "--backfill"], project)
    assert "gen-000: recorded" in back.stdout
    md5 = lock_md5s(project)
    tags = _versions(project)["gen-000"]
    assert tags["dataset.training.md5"] == md5["data/gen-000/train.parquet"]
    assert tags["model_md5"] == md5["data/gen-000/model"]
    assert tags["trained_from_generation"] == "seed"
    again = run([FLYWHEEL, "lineage", "--backfill"], project)
    assert "gen-000: already recorded" in again.stdout
    assert _versions(project) == {"gen-000": tags}
