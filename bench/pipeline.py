"""Benchmarks 1, 2 and 5: the whole flywheel, its orchestration overhead, and DVC.

1. `e2e`: `flywheel run` in a fresh workspace (git, DVC remote, Prefect's local server,
   MLflow on SQLite), as `make run` does after setup: wall time, peak memory of the
   whole process tree (sampled every 0.2 s), and each stage's own time (the
   "[stage] done in" line every stage command prints).
2. `direct`: the same stage functions (`tasks.<stage>.main`) called one after another in
   one Python process, in another fresh workspace, on the same configuration: no Prefect,
   no DVC, no MLflow, no git. Overhead = e2e wall time / direct wall time. Both are
   seeded and deterministic, so their evaluation metrics must agree; the benchmark
   checks that it compared the same work.
5. `dvc`: a workspace with 10 generations, then a no-op `dvc repro` (timed several
   times), and which stages rerun after one `train` key changes.

    python -m bench.pipeline direct WORKSPACE   (used by direct(): prints JSON)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml

from bench import ROOT
from bench import workspace

DONE = re.compile(r"Task run '([^']+)' - \[\w+\] done in ([\d.]+)s")
EVENT = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) \| \w+\s*\| (?:Flow run '[^']+' - Beginning flow run|"
                   r"Task run '([^']+)' - Finished in state)", re.M)


def watched(cmd: list[str], cwd: Path, log_file: Path, env: dict | None = None) -> dict:
    """Run `cmd`, sampling the resident memory of its whole process tree; returns wall
    time, peak tree RSS, the largest single process's peak, and the exit code."""
    peak = {"tree": 0, "single": 0}
    with open(log_file, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env or workspace.env(), stdout=out, stderr=subprocess.STDOUT, text=True)
        root = psutil.Process(proc.pid)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    procs = [root, *root.children(recursive=True)]
                    rss = []
                    for p in procs:
                        try:
                            rss.append(p.memory_info().rss)
                        except psutil.Error:
                            pass
                    peak["tree"] = max(peak["tree"], sum(rss))
                    peak["single"] = max(peak["single"], max(rss, default=0))
                except psutil.Error:
                    pass
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    return {"seconds": round(seconds, 1), "peak_tree_rss_mib": round(peak["tree"] / 2**20),
            "peak_process_rss_mib": round(peak["single"] / 2**20), "exit_code": code}


def _outputs(project: Path, generations: list[str]) -> dict:
    return {g: json.loads((project / "data" / g / "metrics.json").read_text())["accuracy"] for g in generations}


def e2e(work: Path, overrides: dict, log=print) -> dict:
    project = workspace.make_project(work / "e2e", overrides)
    flywheel = str(Path(sys.executable).parent / "flywheel")
    log("e2e: flywheel run ...")
    res = watched([flywheel, "run"], project, work / "e2e.log")
    text = (work / "e2e.log").read_text()
    if res["exit_code"]:
        raise RuntimeError(f"flywheel run failed; see {work / 'e2e.log'}:\n{text[-2000:]}")
    stages, walls = parse_log(text)
    from flywheel.config import load

    gens = list(load(project / "params.yaml").generations)
    names = ("prepare", *_stage_names())
    res |= {"generations": len(gens), "stage_seconds": stages, "stage_seconds_total": round(sum(stages.values()), 1),
            "by_stage": {s: round(sum(v for k, v in stages.items() if k.split("@")[0] == s), 1) for s in names},
            "task_seconds": walls,
            "task_by_stage": {s: round(sum(v for k, v in walls.items() if k.split("@")[0] == s), 1) for s in names},
            "accuracy": _outputs(project, gens), "target": "under 10 minutes"}
    res["outside_stages_seconds"] = round(res["seconds"] - res["stage_seconds_total"], 1)
    log(f"e2e: {res['seconds']}s, peak tree {res['peak_tree_rss_mib']} MiB")
    return res


def parse_log(text: str) -> tuple[dict[str, float], dict[str, float]]:
    """From `flywheel run`'s log: each stage's own time (its "done in" line) and each
    task's wall time (from the previous task's end, or the flow's start, to its own end:
    DVC, the stage process with its imports, and the Prefect bookkeeping)."""
    import datetime as dt

    stages = {name: float(sec) for name, sec in DONE.findall(text)}
    walls, last = {}, None
    for stamp, task in EVENT.findall(text):
        t = dt.datetime.strptime(stamp, "%H:%M:%S.%f")
        if task and last is not None:
            walls[task] = round((t - last).total_seconds() % 86400, 1)
        last = t
    return stages, walls


def _stage_names() -> tuple[str, ...]:
    sys.path.insert(0, str(ROOT))
    from flywheel.layout import STAGES

    return STAGES


def direct(work: Path, overrides: dict, log=print) -> dict:
    project = workspace.make_project(work / "direct", overrides, git=False)
    log("direct: the stage functions in one process ...")
    res = watched([sys.executable, "-m", "bench.pipeline", "direct", str(project)], ROOT, work / "direct.log")
    lines = (work / "direct.log").read_text().strip().splitlines()
    if res["exit_code"]:
        raise RuntimeError("direct run failed:\n" + "\n".join(lines[-20:]))
    res |= json.loads(lines[-1])
    from flywheel.config import load

    gens = list(load(project / "params.yaml").generations)
    res["accuracy"] = _outputs(project, gens)
    log(f"direct: {res['seconds']}s")
    return res


def _direct_main(project: Path) -> None:
    """In this process: every stage's main(), in DAG order, in `project`."""
    import importlib
    import os

    os.chdir(project)
    sys.path.insert(0, str(ROOT))
    from flywheel import layout
    from flywheel.config import load, stage_view
    from flywheel.stage import offline

    offline()
    cfg = load()
    timings = {}
    for name, generation in [("prepare", ""), *[(s, g) for g in cfg.generations for s in layout.STAGES]]:
        module = importlib.import_module(f"tasks.{name}")
        start = time.perf_counter()
        module.main(stage_view(cfg, name), generation)
        timings[f"{name}@{generation}" if generation else name] = round(time.perf_counter() - start, 1)
    print(json.dumps({"stage_seconds": timings}))


def overhead(e2e_res: dict, direct_res: dict) -> dict:
    return {"ratio": round(e2e_res["seconds"] / direct_res["seconds"], 3), "e2e_seconds": e2e_res["seconds"],
            "direct_seconds": direct_res["seconds"], "same_accuracy": e2e_res["accuracy"] == direct_res["accuracy"],
            "stage_seconds_e2e": e2e_res["stage_seconds_total"],
            "stage_seconds_direct": round(sum(direct_res["stage_seconds"].values()), 1),
            "target": "ratio at most 1.15"}


def _dvc(project: Path, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = workspace.run([sys.executable, "-m", "dvc", *args], project)
    return time.perf_counter() - start, proc.stdout + proc.stderr


def dvc(work: Path, overrides: dict, generations: int = 10, repeats: int = 3, log=print,
        built: Path | None = None) -> dict:
    """`built`: an already reproduced workspace with that many generations, used as it is."""
    if built is None:
        project = workspace.make_project(work / "dvc", workspace.merge(overrides, {"generations": workspace.generations(generations)}))
        log(f"dvc: building {generations} generations ...")
        build_s, _ = _dvc(project, "repro")
    else:
        project, build_s = built, 0.0
    noop = []
    for _ in range(repeats):
        seconds, out = _dvc(project, "repro")
        if "Running stage" in out:
            raise RuntimeError(f"the no-op dvc repro ran a stage:\n{out[-1500:]}")
        noop.append(round(seconds, 2))
    status_s, _ = _dvc(project, "status")
    from flows.results import lock_stages

    stages = len(lock_stages(project))
    log(f"dvc: no-op repro {min(noop)}s")
    reruns = {}
    params = yaml.safe_load((project / "params.yaml").read_text())
    for key, value in (("log_every", params["train"]["log_every"] + 5), ("lr", params["train"]["lr"] * 0.5)):
        params["train"][key] = value
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        seconds, out = _dvc(project, "repro")
        ran = re.findall(r"Running stage '([\w@-]+)'", out)
        reruns[f"train.{key}"] = {"stages_rerun": len(ran), "seconds": round(seconds, 1),
                                  "by_stage": {s: sum(1 for r in ran if r.split("@")[0] == s)
                                               for s in ("prepare", *_stage_names())},
                                  "first": ran[:3]}
        log(f"dvc: after train.{key} changed, {len(ran)} stages reran")
    return {"generations": generations, "stages": 1 + 7 * generations, "lock_entries": stages,
            "build_seconds": round(build_s, 1), "noop_repro_seconds": noop, "noop_repro_best": min(noop),
            "status_seconds": round(status_s, 2), "after_train_key_change": reruns, "target": "no-op under 2 s"}


if __name__ == "__main__":
    if sys.argv[1:2] == ["direct"]:
        _direct_main(Path(sys.argv[2]))
    else:
        raise SystemExit("usage: python -m bench.pipeline direct WORKSPACE")
