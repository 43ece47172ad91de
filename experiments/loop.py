"""The loop experiment: does the closed loop (verify the labels, probe
the student, expand around what made its answers fail) beat generating the same number of
rows without looking at the student?

Every arm generates the same number of plan rows per generation (`--size`: `small`, 600
rows and 200 steps a generation, or `default`, the size of params.yaml), over
`--generations` generations and `--seeds` seeds, on the default `toolcall` domain. The
arms (overrides of the checkout's params.yaml):

  full          the closed loop: judge on; error_driven 0.45 (failures, hardest first, each
                child keeping its parent's blamed factors) + borderline 0.25 (right but
                unsure) + random 0.3; accumulate
  static        every generation varies the seed rows again (the first plan's
                distribution): no probe, no expansion
  random        the budget spread uniformly over the skills
  oracle        full with a teacher that never errs: targeting without label noise
  oracle_random random with a teacher that never errs (oracle - oracle_random: what
                targeting gains when no label is wrong)
  tags          full with expand.keep_factors false: children share only their parent's
                functions and skill tags, not the blamed factors
  no_borderline full without the borderline share (error_driven 0.7 + random 0.3)
  progress      full with expand.allocate progress: error_driven's rows split across skill
                combinations by the accuracy each gained per row spent last generation
  judge_first   full with the teacher's second label on every targeted row (kept only
                when both labels agree), not only on skill_synth rows
  no_judge      full, with judge.verify false: the teacher's labels kept as they come
  error_only    error_driven 1.0: no random share
  replace       full with compose.policy replace
and the targeting levers, each one change to `full`:
  broad_first   expand.broad_above 0.5: while more than half the dev rows fail, the plan is random
  learnable     probe.samples 4 + expand.targets learnable: vary rows right in some, not all, of 5 answers
  group_cap     expand.group_cap 0.1: no skill combination takes more than 10% of error_driven's rows
  spread        expand.failure_order spread: each skill combination in turn
  vary_functions expand.vary_functions: a child gets a new function combination for its parent's skill

Each run executes the DAG's stage functions (tasks/*.py `main`) in order in one process,
in a workspace of its own, instead of `dvc repro`: at this size DVC's process per stage
would take a third of the time; the stage code is the same. Runs of a seed whose
configuration agrees up to generation 0's probe share that prefix (computed once per job;
two jobs of one seed running at once may both compute it). A job is one seed and a
group of arms; `--parallel` jobs run at once with one torch thread each (train.threads 1,
OMP_WAIT_POLICY=PASSIVE), so a result does not depend on the schedule.

    python -m experiments.loop [--size small|default|smollm2] [--seeds 5] [--generations 5] [--parallel 2] [--arms a,b]
                         [--out docs]

Results accumulate in <out>/loop.json (`small`), <out>/loop_default.json or
<out>/loop_smollm2.json, one entry per (arm, seed), written as each job ends (finished
entries of the same design are kept). The runs' workspaces stay in `--work` (by default a
folder of the system's temporary directory named for the design) until every job is
measured, each recording the stages it has finished and the stage code and params it was
made under (`fingerprint`): a run killed at any moment goes on, when rerun with the same
code and params, from the first stage it had not finished (a SmolLM2 run loses at most
the stage it was in); one made under others starts afresh. One run at a time uses a
`--work` folder (a lock). The report (<out>/loop.md, loop.png, or loop_default.*) is made from
that file with `--report`, and after every run.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench import ROOT, commit, cpu_model
from flywheel.config import load as load_config
from bench import workspace
from flywheel import store

# The closed loop: variants of the failures that keep what made them fail, variants
# of the right-but-unsure rows, a random share (LoopTool's round-2 mix, less its 10% of repeated
# failures, which its ablation found weaker than variants).
FULL = {"judge": {"verify": True}, "compose": {"policy": "accumulate"},
        "expand": {"strategy": {"error_driven": 0.45, "borderline": 0.25, "random": 0.3},
                   "failure_order": "hardest", "keep_factors": True}}
_RATES = load_config(ROOT / "params.yaml").generate.skill_error_rates
ARMS = {
    "full": {},
    "static": {"expand": {"strategy": {"static": 1.0}}},
    "random": {"expand": {"strategy": {"random": 1.0}}},
    # the same targeting with true labels: what label noise costs, apart from what targeting gains
    "oracle": {"generate": {"error_rate": 0.0, "skill_error_rates": {k: 0.0 for k in _RATES}}},
    # random expansion with true labels: oracle - oracle_random is what targeting gains without label noise
    "oracle_random": {"generate": {"error_rate": 0.0, "skill_error_rates": {k: 0.0 for k in _RATES}},
                      "expand": {"strategy": {"random": 1.0}}},
    # children share only their parent's functions and skill tags, not its blamed factors
    "tags": {"expand": {"keep_factors": False}},
    "no_borderline": {"expand": {"strategy": {"error_driven": 0.7, "borderline": 0.0, "random": 0.3}}},
    # the budget and judge levers: error_driven split by learning progress per cluster;
    # the teacher's second label (self-consistency) on every targeted row
    "progress": {"expand": {"allocate": "progress"}},
    "judge_first": {"generate": {"self_consistency": ["skill_synth", "error_driven", "borderline"]}},
    "no_judge": {"judge": {"verify": False}},
    "error_only": {"expand": {"strategy": {"error_driven": 1.0, "borderline": 0.0, "random": 0.0}}},
    "replace": {"compose": {"policy": "replace"}},
    "broad_first": {"expand": {"broad_above": 0.5}},
    "learnable": {"probe": {"samples": 4}, "expand": {"targets": "learnable"}},
    "group_cap": {"expand": {"group_cap": 0.1}},
    "spread": {"expand": {"failure_order": "spread"}},
    "vary_functions": {"expand": {"vary_functions": True}},
}
# `small`: a tenth of the default run's rows and a fifth of its steps, so that many arms and
# seeds fit in an hour on 2 cores; `default`: the size `make run` runs (params.yaml).
_DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
SIZES = {
    "small": {"prepare": {"plan_rows": 600}, "expand": {"budget": 600},
              "train": {"steps": 200, "threads": 1, "log_every": 50}},
    "default": {"prepare": {"plan_rows": _DEFAULT["prepare"]["plan_rows"]},
                "expand": {"budget": _DEFAULT["expand"]["budget"]},
                "train": {"steps": _DEFAULT["train"]["steps"], "threads": 1, "log_every": 100}},
}
# `smollm2`: the low-data regime with a pretrained student (SmolLM2-135M-Instruct, LoRA r 8,
# profiles/smollm2.yaml), where LoopTool and LLM2LLM find their gains: 200 new rows and 40
# steps of 16 a generation, the 322 `user` rows (what the comparison reads) and 30 generated
# evaluation rows; one job at a time with both threads (`--parallel 1`).
_SMOLLM2 = yaml.safe_load((ROOT / "profiles" / "smollm2.yaml").read_text())
SIZES["smollm2"] = workspace.merge(_SMOLLM2, {
    "prepare": {"plan_rows": 200, "seed_rows": 120, "eval_rows": 30}, "expand": {"budget": 200},
    "train": {"steps": 40, "threads": 2}, "probe": {"train_rows": 200}})
STEMS = {"small": "loop", "default": "loop_default", "tiny": "loop", "smollm2": "loop_smollm2"}  # <out>/<stem>.json, .md, .png
TINY = {"prepare": {"plan_rows": 60, "seed_rows": 40, "eval_rows": 60,
                    "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 128}},
        "expand": {"budget": 60}, "train": {"steps": 10, "batch_size": 16, "warmup_steps": 2, "threads": 1}}
STAGES = ("generate", "judge", "compose", "train", "evaluate", "probe", "expand")
PREFIX = ("prepare", "generate", "judge", "compose", "train", "evaluate")  # generation 0, before its probe
SEED0 = 20261121
PROGRESS = "loop-progress.json"  # in an arm's workspace: its finished stages, their seconds, its fingerprint


def arm_params(arm: str, seed: int, generations: int, size: dict) -> dict:
    params = workspace.merge(workspace.merge(workspace.merge(size, FULL), ARMS[arm]), {"seed": seed, "generations": workspace.generations(generations)})
    params["publish"] = {"git_commit": False, "git_tag": False, "dvc_push": False}
    return params


def design(size: dict) -> str:
    """What a stored result must agree with to be kept: the sizes and `full` (each run also
    records its own arm's definition, `arm_hash`; an arm may have fewer generations or seeds
    than another; the report compares like with like)."""
    text = json.dumps({"size": size, "full": FULL}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def arm_hash(arm: str) -> str:
    return hashlib.sha256(json.dumps(ARMS[arm], sort_keys=True).encode()).hexdigest()[:12]


def run_stage(name: str, generation: str) -> None:
    from flywheel import stage
    from flywheel.config import load, stage_view

    cfg = load()
    importlib.import_module(f"tasks.{name}").main(stage_view(cfg, name), generation)
    stage.log(name, f"{generation or 'seed'} done")


PREFIX_SECTIONS = ("seed", "prepare", "generate", "judge", "compose", "train", "evaluate", "domain", "student")


def link_model(dest: Path, params: dict) -> None:
    """A student model under the checkout's models/ (SmolLM2's folder), linked into the workspace."""
    model = (params.get("student") or {}).get("model") or ""
    if model.startswith("models/") and (ROOT / model).is_dir() and not (dest / model).exists():
        (dest / model).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(ROOT / model, dest / model)


def measure(dest: Path, gens: list[str]) -> list[dict]:
    import pandas as pd

    split = pd.read_parquet(dest / "data" / "eval.parquet", columns=["id", "split"]).set_index("id")["split"]
    out, generated, kept = [], 0, 0
    for g in gens:
        d = dest / "data" / g
        metrics = json.loads((d / "metrics.json").read_text())
        judge = json.loads((d / "judge.json").read_text())
        profile = json.loads((d / "failure_profile.json").read_text())
        train = pd.read_parquet(d / "train.parquet", columns=["generation"])
        dev = pd.read_parquet(d / "dev.parquet", columns=["generation"])
        preds = pd.read_parquet(d / "predictions.parquet", columns=["id", "correct"])
        generator = preds[preds["id"].map(split) != "user"]  # the evaluation set without the hand-written split
        generated += judge["rows"]
        kept += int((train["generation"] == g).sum() + (dev["generation"] == g).sum())
        out.append({"generation": g, "user": metrics["per_split"]["user"],
                    "eval": round(float(generator["correct"].mean()), 4), "per_split": metrics["per_split"],
                    "generated_rows": generated, "kept_rows": kept, "train_rows": len(train),
                    "kept_label_accuracy": judge["kept_label_accuracy"],
                    "teacher_label_accuracy": 1 - judge["teacher_error_rate"],
                    "dev_failure_rate": profile["splits"].get("dev", {}).get("failure_rate"),
                    "learnable": profile.get("learnable")})
    return out


def _plan(gens: list[str]) -> list[tuple[str, str]]:
    """(stage, generation) in the order a run makes them: generation 0's prefix first."""
    steps = [(name, "" if name == "prepare" else gens[0]) for name in PREFIX]
    for i, g in enumerate(gens):
        steps += [(name, g) for name in STAGES
                  if not (i == 0 and name in PREFIX) and not (name == "expand" and g == gens[-1])]
    return steps


@functools.cache
def _code() -> bytes:
    """The stage code the runs import (the checkout's flywheel/, tasks/ and domains/), read once."""
    code = b""
    for folder in ("flywheel", "tasks", "domains"):
        for f in sorted((ROOT / folder).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                code += str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes()
    return hashlib.sha256(code).digest()


def fingerprint(params: dict, sections: tuple[str, ...] | None = None) -> str:
    """What a kept workspace's finished stages depend on beyond its name: the stage code
    and the params its stages read (the checkout's params.yaml merged with `params`;
    `sections` of them, or all). A workspace made under another fingerprint is not gone
    on from but started afresh."""
    merged = workspace.merge(yaml.safe_load((ROOT / "params.yaml").read_text()), params)
    if sections is not None:
        merged = {k: merged.get(k) for k in sections}
    text = json.dumps(merged, sort_keys=True, default=str).encode()
    return hashlib.sha256(_code() + b"\0" + text).hexdigest()[:12]


def _progress(dest: Path, made_under: str) -> dict | None:
    """The stages `dest` has finished, if it was made under the fingerprint `made_under`."""
    path = dest / PROGRESS
    if not path.exists():
        return None
    done = json.loads(path.read_text())
    if done.get("fingerprint") != made_under:
        print(f"{dest}: made with other stage code or params; started afresh", file=sys.stderr, flush=True)
        return None
    return done


def prefix_name(seed: int, params: dict) -> str:
    """A seed's shared generation 0 in `work`, named for what it was made under (the params
    its stages read and the stage code): runs that agree on them share it."""
    return f"prefix-{seed}-{fingerprint(params, PREFIX_SECTIONS)}"


def arm_workspace(arm: str, seed: int, generations: int) -> str:
    return f"{arm}-{arm_hash(arm)}-{seed}-{generations}"


def job(seed: int, arms: list[str], generations: int, size: dict, work: Path) -> None:
    """Run `arms` for one seed in this process; a shared generation-0 prefix is made once.
    Each arm's workspace (work/<arm>-<hash>-<seed>-<generations>) records the stages it has finished
    (PROGRESS) and what it was made under (`fingerprint`), so a job killed at any moment
    goes on, when rerun on the same `work` with the same code and params, from the first
    stage it had not finished; a finished arm's result is printed (a RESULT line)
    as soon as it is measured."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.path.insert(0, str(ROOT))
    from flywheel import stage

    stage.offline()
    gens = list(workspace.generations(generations))
    home = Path.cwd()
    for arm in arms:
        params = arm_params(arm, seed, generations, size)
        made_under = fingerprint(params)
        prefix = work / prefix_name(seed, params)
        dest = work / arm_workspace(arm, seed, generations)
        done = _progress(dest, made_under)
        if done is None:  # not started: from the seed's prefix where it is made, else from nothing
            shutil.rmtree(dest, ignore_errors=True)
            if prefix.exists():
                shutil.copytree(prefix, dest, symlinks=True)
                done = {"stages": [f"{n}@{g}" for n, g in _plan(gens)[:len(PREFIX)]], "seconds": 0.0}
            else:
                workspace.make_project(dest, params, git=False)
                link_model(dest, params)
                done = {"stages": [], "seconds": 0.0}
            done["fingerprint"] = made_under
            store.write_json(done, dest / PROGRESS)
        workspace.write_params(dest, params)
        try:
            os.chdir(dest)
            for k, (name, g) in enumerate(_plan(gens)):
                if f"{name}@{g}" in done["stages"]:
                    continue
                if k == len(PREFIX) and not prefix.exists():  # generation 0 before its probe: shared
                    part = work / f".{prefix.name}.{arm}"  # whole or absent: a job beside this one may make it too
                    shutil.rmtree(part, ignore_errors=True)
                    shutil.copytree(dest, part, symlinks=True, ignore=shutil.ignore_patterns(PROGRESS))
                    try:
                        part.rename(prefix)
                    except OSError:  # the other job's is there first
                        shutil.rmtree(part, ignore_errors=True)
                start = time.monotonic()
                run_stage(name, g)
                done["stages"].append(f"{name}@{g}")
                done["seconds"] = round(done["seconds"] + time.monotonic() - start, 1)
                store.write_json(done, dest / PROGRESS)
            curve = measure(dest, gens)
            curve[-1]["seconds"] = done["seconds"]
        finally:
            os.chdir(home)
        print("RESULT " + json.dumps({arm: curve}), flush=True)
    # the workspaces stay: the parent removes them (`forget`) once every job is measured and kept


def hold(work: Path):
    """An exclusive lock on `work` for this run (an open file: released when it closes or
    the process ends); a second run on the same workspaces is refused."""
    import fcntl

    work.mkdir(parents=True, exist_ok=True)
    fh = open(work / ".lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"experiments.loop: another run is using {work} (--work names another folder)") from None
    return fh


def forget(work: Path, runs: list[tuple[int, str]], generations: int, size: dict) -> None:
    """Remove the workspaces of `runs` (seed, arm) and their seeds' shared generation 0
    from `work`, and `work` itself once nothing else is in it."""
    for seed, arm in runs:
        prefix = prefix_name(seed, arm_params(arm, seed, generations, size))
        for path in [work / arm_workspace(arm, seed, generations), work / prefix, *work.glob(f".{prefix}.*")]:
            shutil.rmtree(path, ignore_errors=True)
    if [p.name for p in work.iterdir()] == [".lock"]:
        shutil.rmtree(work, ignore_errors=True)


def jobs_for(arms: list[str], seeds: list[int], parallel: int) -> list[tuple[int, list[str]]]:
    """Each seed's arms in `parallel` groups (round robin), so that the last round is not one job alone."""
    groups = max(1, parallel)
    out = []
    for seed in seeds:
        for k in range(groups):
            part = arms[k::groups]
            if part:
                out.append((seed, part))
    return out


def load_results(path: Path, tag: str) -> dict:
    if not path.exists():
        return {"design": tag, "meta": {}, "runs": {}}
    data = json.loads(path.read_text())
    if data.get("design") != tag:
        print(f"{path}: made with another design; starting afresh", file=sys.stderr)
        return {"design": tag, "meta": {}, "runs": {}}
    stale = [k for k, r in data["runs"].items() if r["arm"] not in ARMS or r.get("arm_hash") != arm_hash(r["arm"])]
    for k in stale:  # an arm redefined since: its runs are redone
        print(f"{path}: {k} was made with another definition of its arm; dropped", file=sys.stderr)
        del data["runs"][k]
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--generations", type=int, default=5)
    ap.add_argument("--parallel", type=int, default=2, help="jobs at once (one torch thread each)")
    ap.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms (default: all)")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--size", choices=sorted(SIZES), default="small",
                    help="small (600 rows, 200 steps a generation), default (the size of params.yaml) or smollm2 "
                         "(SmolLM2 with LoRA, 200 rows and 40 steps a generation; run it with --parallel 1)")
    ap.add_argument("--tiny", action="store_true", help="a minute-long smoke run (tests)")
    ap.add_argument("--report", action="store_true", help="only write the report from <out>/loop.json")
    ap.add_argument("--work", help="where the runs' workspaces are kept until every job of the run is measured, "
                                   "so that a rerun goes on from the first stage a run had not finished (default: "
                                   "under the system's temporary folder, named for the size's design)")
    ap.add_argument("--job", help=argparse.SUPPRESS)  # internal: SEED:ARM,ARM, run by the parent
    args = ap.parse_args(argv)
    size_name = "tiny" if args.tiny else args.size
    size = TINY if args.tiny else SIZES[args.size]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = design(size)
    work = Path(args.work) if args.work else Path(tempfile.gettempdir()) / f"flywheel-{STEMS[size_name]}-{tag}"
    if args.job:
        seed, arms = args.job.split(":")
        job(int(seed), arms.split(","), args.generations, size, work)
        return 0
    from experiments import loop_report

    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"--arms: unknown arm {unknown[0]!r} (arms: {', '.join(ARMS)})")
    seeds = [SEED0 + i for i in range(args.seeds)]
    path = out / f"{STEMS[size_name]}.json"
    data = load_results(path, tag)
    if not args.report:
        lock = hold(work)  # noqa: F841 (held while this process lives)
        todo = [(s, [a for a in group if f"{a}/{s}" not in data["runs"]])
                for s, group in jobs_for(arms, seeds, args.parallel)]
        todo = [(s, g) for s, g in todo if g]
        start = time.monotonic()
        running: list[tuple[subprocess.Popen, int, list[str], float, Path]] = []
        logs = Path(tempfile.mkdtemp(prefix="flywheel-loop-logs-"))
        env = workspace.env() | {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
        while todo or running:
            while todo and len(running) < max(1, args.parallel):
                s, group = todo.pop(0)
                cmd = [sys.executable, "-m", "experiments.loop", "--job", f"{s}:{','.join(group)}",
                       "--generations", str(args.generations), "--out", str(out), "--size", args.size,
                       "--work", str(work)] + \
                    (["--tiny"] if args.tiny else [])
                log = logs / f"{s}-{group[0]}.log"
                with open(log, "w") as fh:  # a file, not a pipe: the stages' progress would fill a pipe
                    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
                running.append((proc, s, group, time.monotonic(), log))
            time.sleep(1)
            for item in list(running):
                proc, s, group, began, log = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                text = log.read_text()
                res = {}  # the arms the job measured, each on its RESULT line, kept even when a later arm failed
                for line in text.splitlines():
                    if line.startswith("RESULT "):
                        res.update(json.loads(line[len("RESULT "):]))
                for arm, curve in res.items():
                    data["runs"][f"{arm}/{s}"] = {"arm": arm, "seed": s, "arm_hash": arm_hash(arm),
                                                  "commit": commit(), "curve": curve}
                    print(f"{arm} seed {s}: user " + " ".join(f"{r['user']:.3f}" for r in curve)
                          + f" ({curve[-1]['seconds']:.0f} s)", flush=True)
                data["meta"] = {"date": time.strftime("%Y-%m-%d"), "commit": commit(), "cpu": cpu_model(), "arms": list(ARMS),
                                "machine": f"{platform.machine()}, "
                                f"{os.cpu_count()} cores", "seeds": sorted(set(data["meta"].get("seeds", [])) | set(seeds)),
                                "generations": max(args.generations, data["meta"].get("generations", 0)),
                                "size": size, "parallel": args.parallel,
                                "job_seconds": round(data["meta"].get("job_seconds", 0) + time.monotonic() - began),
                                "wall_seconds": data["meta"].get("wall_seconds", [])}
                store.write_json(data, path)
                if proc.returncode:
                    for p, *_ in running:
                        p.kill()
                    raise SystemExit(f"experiments.loop: seed {s} arms {','.join(group)} failed "
                                     f"({proc.returncode}), log {log} (a rerun goes on from its last "
                                     f"finished stage, in {work}):\n{text[-3000:]}")
        forget(work, [(s, a) for s in seeds for a in arms], args.generations, size)  # all measured and kept
        if data["meta"]:
            data["meta"]["wall_seconds"] = data["meta"].get("wall_seconds", []) + [round(time.monotonic() - start)]
            store.write_json(data, path)
        shutil.rmtree(logs, ignore_errors=True)  # kept only when a job fails
        print(f"experiments.loop: {time.monotonic() - start:.0f} s", flush=True)
    loop_report.write(data, out, STEMS[size_name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
