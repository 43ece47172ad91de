"""The Prefect flow: run every generation's DVC stages as tasks, then record it.

Each task runs `dvc repro -s <stage>@<generation>`, so a Prefect run executes the very
commands `dvc repro` does and leaves the same `dvc.lock`. DVC decides from its own hashes
whether a stage is stale; an up-to-date stage costs one `dvc` call and runs nothing. DVC
calls are serialized (its repo lock does not wait). After a generation's seven stages,
`record` logs its lineage to MLflow, applies the champion gate, publishes a markdown
artifact, commits and tags `dvc.lock` in git and pushes the data to the DVC remote.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.recover import keep_good
from flywheel import layout, store
from flywheel.config import PARAMS, Config, load
from flywheel.stage import child_env

_DVC_LOCK = threading.Lock()


LINEAGE_OUTPUT = layout.METRICS  # a generation whose evaluation exists can be recorded


class StageFailed(RuntimeError):
    pass


class LineageMissing(RuntimeError):
    """The data of a run is complete, but MLflow did not record some generations."""


def dvc(root: Path, *args: str, log=None) -> tuple[int, str]:
    """Run one DVC command (serialized), streaming its output line by line to `log`."""
    with _DVC_LOCK:
        proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=root, env=child_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines = []
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if log and line:
                log(line)
        return proc.wait(), "\n".join(lines)


@task(task_run_name="{stage}", retries=0)
def run_stage(root: Path, stage: str) -> bool:
    """Run one DVC stage; True when it ran, False when DVC found it up to date."""
    logger = get_run_logger()
    code, out = dvc(root, "repro", "-s", stage, log=logger.info)
    if code != 0:
        # DVC removed the stage's outputs before running it: put the last good ones back
        # from its cache, so a failed night leaves the workspace as the last good one left it.
        dvc(root, "checkout", "-q", stage)
        errors = [ln for ln in out.splitlines() if ln.startswith(("error:", "ERROR"))]
        raise StageFailed(f"stage {stage} failed: {errors[0] if errors else out.splitlines()[-1:]}")
    keep_good(root)  # the copy a run killed during DVC's next lock write is repaired from
    return f"Running stage '{stage}'" in out


def add_generations(path: Path, n: int) -> list[str]:
    """Append n generations to params.yaml's `generations`, keeping the file's comments."""
    cfg = load(path)
    names = list(cfg.generations)
    text = path.read_text(encoding="utf-8")
    block = re.search(r"^generations:\n((?:[ \t]+.*\n|\s*\n)*)", text, re.M)
    if block is None:
        raise store.DataError(f"{path}: no 'generations:' block to add to")
    last = int(names[-1].split("-")[1]) if names else -1
    new = [f"gen-{last + i + 1:03d}" for i in range(n)]
    prevs = [names[-1] if names else layout.SEED] + new[:-1]
    body = block.group(1).rstrip("\n") + "\n"
    body += "".join(f"  {g}:\n    prev: {p}\n" for g, p in zip(new, prevs))
    tail = text[block.end(1):]
    updated = text[: block.start(1)] + body + ("\n" if tail else "") + tail
    with store.atomic_file(path) as tmp:
        tmp.write_text(updated, encoding="utf-8")
    load(path)  # the edit must still validate
    return new


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


@task(retries=2, retry_delay_seconds=[2, 10], retry_jitter_factor=0.5)
def publish(root: Path, cfg: Config, generation: str) -> str:
    """Commit and tag the generation in git and push its data: the I/O that can flake."""
    pc = cfg.publish
    done = []
    if _git(root, "rev-parse", "--git-dir").returncode == 0 and (pc.git_commit or pc.git_tag):
        files = ["params.yaml", "dvc.lock", *[str(p) for p in (root / "data").glob("*/.gitignore")],
                 "data/.gitignore"]
        files += [str(layout.path(generation, f)) for f in (layout.METRICS, layout.JUDGE_METRICS,
                                                            layout.GENERATE_METRICS, layout.FAILURE_PROFILE,
                                                            layout.SKILL_ACCURACY, layout.TRAIN_LOSS)]
        if pc.git_commit:
            files = [f for f in files if (root / f).exists()]
            add = _git(root, "add", "--", *files)
            if add.returncode != 0:
                raise RuntimeError(f"git add failed: {' '.join(add.stderr.split())[:300]}")
            if _git(root, "diff", "--cached", "--quiet", "--", *files).returncode != 0:
                # Only these paths: whatever else the user has staged stays out of the commit.
                commit = _git(root, "-c", "user.name=flywheel", "-c", "user.email=flywheel@localhost",
                              "commit", "-q", "-m", f"flywheel: {generation}", "--", *files)
                if commit.returncode != 0:
                    raise RuntimeError(f"git commit failed: {' '.join(commit.stderr.split())[:300]}")
                done.append("committed")
        if pc.git_tag:
            _git(root, "tag", "-f", generation)
            done.append(f"tagged {generation}")
    if pc.dvc_push:
        code, out = dvc(root, "push", "-q")
        if code != 0:
            raise RuntimeError(f"dvc push failed: {out.splitlines()[-1:] }")
        done.append("pushed")
    return ", ".join(done) or "nothing to publish"


def _summary_markdown(generation: str, root: Path, record: dict) -> str:
    metrics = store.read_json(root / layout.path(generation, layout.METRICS))
    judge = store.read_json(root / layout.path(generation, layout.JUDGE_METRICS))
    train = store.read_table(root / layout.path(generation, layout.TRAIN), store.TRAINSET)
    lines = [f"# Flywheel {generation}", "",
             f"**Evaluation accuracy {metrics['accuracy']:.3f}** "
             f"({', '.join(f'{k} {v:.3f}' for k, v in metrics['per_split'].items())})", "",
             f"Model version {record['version']}: "
             f"{'**promoted to champion**' if record['promoted'] else 'not promoted'} — {record['reason']}", "",
             "| skill | accuracy |", "|---|---|"]
    lines += [f"| {s} | {a:.3f} |" for s, a in metrics["per_skill"].items()]
    if "precision" in judge:  # measured against the truth: the toolcall simulation only
        lines += ["", f"Judge: precision {judge['precision']:.3f}, recall {judge['recall']:.3f}, "
                  f"kept-label accuracy {judge['kept_label_accuracy']:.3f}"]
    if "committee" in judge:
        lines += ["", f"Judge committee: {judge['committee']['asked']} rows asked, "
                  f"{judge['committee']['members']} members, kappa {judge['committee']['kappa']}"]
    alarms = record.get("alarms") or []
    lines += ["", "**Loop health alarms:** " + ("none" if not alarms else ""), *[f"- {a}" for a in alarms]]
    lines += ["", "| verdict | rows |", "|---|---|"]
    lines += [f"| {v} | {n} |" for v, n in judge["verdicts"].items()]
    lines += ["", "| source | training rows |", "|---|---|"]
    lines += [f"| {s} | {n} |" for s, n in train["source"].value_counts().sort_index().items()]
    return "\n".join(lines)


@task(task_run_name="record@{generation}", retries=2, retry_delay_seconds=[2, 10])
def record(root: Path, cfg: Config, generation: str, parent_run_id: str | None) -> dict:
    """MLflow lineage + champion gate + a markdown artifact for one generation."""
    from flows.lineage import log_generation, setup_mlflow

    setup_mlflow(cfg, root)  # tasks may run in another thread than the flow
    with tempfile.TemporaryDirectory() as tmp:
        result = log_generation(cfg, root, generation, parent_run_id, Path(tmp))
    create_markdown_artifact(key=f"flywheel-{generation}", markdown=_summary_markdown(generation, root, result),
                             description=f"flywheel {generation}")
    for alarm in result.get("alarms") or []:
        get_run_logger().warning(f"{generation}: loop health alarm: {alarm}")
    get_run_logger().info(f"{generation}: model version {result['version']}, "
                          f"{'promoted' if result['promoted'] else 'not promoted'} ({result['reason']})")
    return result


def _lineage_failed(generation: str, exc: BaseException) -> str:
    return f"{generation}: lineage not recorded ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"


@flow(name="flywheel", log_prints=True)
def flywheel(project: str = ".", generations: int = 0) -> list[dict]:
    """Add `generations` new generations to params.yaml, then bring every generation up to
    date stage by stage, recording each one (MLflow, gate, git, DVC remote).

    One run per workspace at a time (flows/runlock.py). MLflow is not allowed to stop the
    data: if it is unreachable or its database is locked, every stage still runs and is
    published, the flow ends failed with a message, and `flywheel lineage --backfill`
    records the missing generations once MLflow is back."""
    from flows.runlock import run_lock

    root = Path(project).resolve()
    logger = get_run_logger()
    run_name = flow_run.get_name() or "flywheel"
    with run_lock(root, f"flow run {run_name}") as note:
        if note:
            logger.warning(note)
        if generations:
            logger.info(f"added generations {add_generations(root / PARAMS, generations)}")
        cfg = load(root / PARAMS)
        from flows.lineage import setup_mlflow

        missing: list[str] = []
        results = []
        with contextlib.ExitStack() as stack:
            parent_id = None
            try:
                warning = setup_mlflow(cfg, root)
                if warning:
                    logger.warning(warning)
                parent = stack.enter_context(mlflow.start_run(
                    run_name=run_name, tags={"prefect_flow_run_id": str(flow_run.get_id() or "")}))
                parent_id = parent.info.run_id
            except Exception as exc:  # noqa: BLE001 - any MLflow failure: the data goes on without it
                logger.warning(f"MLflow unavailable, lineage will be missing: {_lineage_failed('run', exc)}")
            run_stage(root, "prepare")
            for generation in cfg.generations:
                ran = [run_stage(root, f"{stage}@{generation}") for stage in layout.STAGES]
                state = record(root, cfg, generation, parent_id, return_state=True)
                if state.is_completed():
                    result = state.result()
                else:
                    missing.append(generation)
                    logger.error(_lineage_failed(generation, state.result(raise_on_failure=False)))
                    result = {"version": None, "promoted": False, "reason": "lineage not recorded", "alarms": []}
                result["stages_run"] = sum(ran)
                result["generation"] = generation
                if any(ran) or result.get("logged") or generation in missing:
                    result["published"] = publish(root, cfg, generation)
                results.append(result)
        if missing:
            raise LineageMissing(f"the data of {', '.join(missing)} is complete and published, but its lineage "
                                 "is not in MLflow; run `flywheel lineage --backfill` once MLflow is reachable")
    return results
