"""The Prefect flow: run every generation's DVC stages as tasks, then record it.

Each task runs `dvc repro -s <stage>@<generation>`, so a Prefect run executes the very
commands `dvc repro` does and leaves the same `dvc.lock`. DVC decides from its own hashes
whether a stage is stale; an up-to-date stage costs one `dvc` call and runs nothing. DVC
calls are serialized (flows/workspace.py). After a generation's seven stages, `record`
reads its results once (flows/results.py), logs its lineage to MLflow, applies the
champion gate and publishes a markdown artifact; `publish` commits and tags `dvc.lock`
in git and pushes the data to the DVC remote.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows import report, results, workspace
from flows.recover import keep_good
from flywheel import layout, store
from flywheel.config import PARAMS, Config, load


class StageFailed(RuntimeError):
    pass


class LineageMissing(RuntimeError):
    """The data of a run is complete, but MLflow did not record some generations."""


@task(task_run_name="{stage}", retries=0)
def run_stage(root: Path, stage: str) -> bool:
    """Run one DVC stage; True when it ran, False when DVC found it up to date."""
    logger = get_run_logger()
    code, out = workspace.dvc(root, "repro", "-s", stage, log=logger.info)
    if code != 0:
        # DVC removed the stage's outputs before running it: put the last good ones back
        # from its cache, so a failed night leaves the workspace as the last good one left it.
        workspace.dvc(root, "checkout", "-q", stage)
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


@task(retries=2, retry_delay_seconds=[2, 10], retry_jitter_factor=0.5)
def publish(root: Path, cfg: Config, generation: str, to_origin: bool = False) -> str:
    """Commit and tag the generation in git and push its data: the I/O that can flake."""
    return workspace.publish(root, cfg.publish, generation, to_origin=to_origin)


@task(retries=2, retry_delay_seconds=[2, 10], retry_jitter_factor=0.5)
def pull(root: Path) -> str:
    """`dvc pull`: a deployment's fresh clone fetches the data its dvc.lock names."""
    return workspace.pull(root, log=get_run_logger().info)


def summary_markdown(r: results.Results, record: dict) -> str:
    """The generation's Prefect artifact."""
    lines = [f"# Flywheel {r.generation}", "",
             f"**Evaluation accuracy {r.metrics['accuracy']:.3f}** "
             f"({', '.join(f'{k} {v:.3f}' for k, v in r.metrics['per_split'].items())})", "",
             f"Model version {record['version']}: "
             f"{'**promoted to champion**' if record['promoted'] else 'not promoted'} — {record['reason']}", "",
             "| skill | accuracy |", "|---|---|"]
    lines += [f"| {s} | {a:.3f} |" for s, a in r.metrics["per_skill"].items()]
    if "precision" in r.judge:  # measured against the truth: the toolcall simulation only
        lines += ["", f"Judge: precision {r.judge['precision']:.3f}, recall {r.judge['recall']:.3f}, "
                  f"kept-label accuracy {r.judge['kept_label_accuracy']:.3f}"]
    if "committee" in r.judge:
        lines += ["", f"Judge committee: {r.judge['committee']['asked']} rows asked, "
                  f"{r.judge['committee']['members']} members, kappa {r.judge['committee']['kappa']}"]
    alarms = record.get("alarms") or []
    lines += ["", "**Loop health alarms:** " + ("none" if not alarms else ""), *[f"- {a}" for a in alarms]]
    lines += ["", "| verdict | rows |", "|---|---|"]
    lines += [f"| {v} | {n} |" for v, n in r.judge["verdicts"].items()]
    lines += ["", "| source | training rows |", "|---|---|"]
    lines += [f"| {s} | {n} |" for s, n in r.train["source"].value_counts().sort_index().items()]
    return "\n".join(lines)


@task(task_run_name="record@{generation}", retries=2, retry_delay_seconds=[2, 10])
def record(root: Path, cfg: Config, generation: str, parent_run_id: str | None) -> dict:
    """MLflow lineage + champion gate + a markdown artifact for one generation."""
    from flows.lineage import log_generation, setup_mlflow

    r = results.read(root, cfg, generation)
    setup_mlflow(cfg, root)  # tasks may run in another thread than the flow
    with tempfile.TemporaryDirectory() as tmp:
        result = log_generation(cfg, root, r, parent_run_id, Path(tmp))
    create_markdown_artifact(key=f"flywheel-{generation}", markdown=summary_markdown(r, result),
                             description=f"flywheel {generation}")
    for alarm in result.get("alarms") or []:
        get_run_logger().warning(f"{generation}: loop health alarm: {alarm}")
    get_run_logger().info(f"{generation}: model version {result['version']}, "
                          f"{'promoted' if result['promoted'] else 'not promoted'} ({result['reason']})")
    return result | {"table": report.row(r, result)}


def _lineage_failed(generation: str, exc: BaseException) -> str:
    return f"{generation}: lineage not recorded ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"


def _log_table(run_id: str, rows: list[dict]) -> None:
    """The run's full table of generations (every column) on its MLflow parent run."""
    try:
        mlflow.MlflowClient().log_text(run_id, report.markdown(rows) + "\n", "generations.md")
    except Exception as exc:  # noqa: BLE001 - the data is done; a missing table is only a warning
        get_run_logger().warning(f"the table of generations was not logged to MLflow: {exc}")


def _parent_run(stack: contextlib.ExitStack, cfg: Config, root: Path, run_name: str) -> str | None:
    """The MLflow run of this flow run, or None when MLflow cannot be reached (the data
    goes on without it)."""
    from flows.lineage import setup_mlflow

    logger = get_run_logger()
    try:
        warning = setup_mlflow(cfg, root)
        if warning:
            logger.warning(warning)
        parent = stack.enter_context(mlflow.start_run(
            run_name=run_name, tags={"prefect_flow_run_id": str(flow_run.get_id() or "")}))
        return parent.info.run_id
    except Exception as exc:  # noqa: BLE001 - any MLflow failure: the data goes on without it
        logger.warning(f"MLflow unavailable, lineage will be missing: {_lineage_failed('run', exc)}")
        return None


@flow(name="flywheel", log_prints=True)
def flywheel(project: str = ".", generations: int = 0, shared: bool = False) -> list[dict]:
    """Add `generations` new generations to params.yaml, then bring every generation up to
    date stage by stage, recording each one (MLflow, gate, git, DVC remote).

    `shared` is for a deployment's worker, which runs in a fresh clone of the project's
    git repository (`flywheel deploy`): `dvc pull` first, and each published generation's
    commit and tag are pushed to `origin` after its data is pushed to the DVC remote.

    One run per workspace at a time (flows/runlock.py). MLflow is not allowed to stop the
    data: if it is unreachable or its database is locked, every stage still runs and is
    published, the flow ends failed with a message, and `flywheel lineage --backfill`
    records the missing generations once MLflow is back."""
    from flows.runlock import run_lock

    root = Path(project).resolve()
    logger = get_run_logger()
    run_name = flow_run.get_name() or "flywheel"
    with run_lock(root, f"flow run {run_name}") as note, contextlib.ExitStack() as stack:
        if note:
            logger.warning(note)
        if shared:
            pull(root)
        if generations:
            logger.info(f"added generations {add_generations(root / PARAMS, generations)}")
        cfg = load(root / PARAMS)
        parent_id = _parent_run(stack, cfg, root, run_name)
        missing, done = [], []
        run_stage(root, "prepare")
        for generation in cfg.generations:
            ran = [run_stage(root, f"{stage}@{generation}") for stage in layout.STAGES]
            state = record(root, cfg, generation, parent_id, return_state=True)
            if state.is_completed():
                result = state.result()
            else:
                missing.append(generation)
                logger.error(_lineage_failed(generation, state.result(raise_on_failure=False)))
                result = {"version": None, "promoted": False, "reason": "lineage not recorded", "alarms": [],
                          "table": report.row(results.read(root, cfg, generation), {"version": None})}
            result |= {"stages_run": sum(ran), "generation": generation}
            if any(ran) or result.get("logged") or generation in missing:
                result["published"] = publish(root, cfg, generation, shared)
            done.append(result)
        if parent_id is not None:
            _log_table(parent_id, [r["table"] for r in done])
        if missing:
            raise LineageMissing(f"the data of {', '.join(missing)} is complete and published, but its lineage "
                                 "is not in MLflow; run `flywheel lineage --backfill` once MLflow is reachable")
    return done
