"""The real-student profile measured: generations of the flywheel with SmolLM2-135M-Instruct
(profiles/smollm2.yaml) beside the built-in student (params.yaml as it is), `user` and
the generator's evaluation splits per generation, seconds per stage, the checkpoint's
size (the registry's size per version is bench/registry_size.py's).

    python -m experiments.real_student [--generations 3] [--students smollm2,builtin]
    python -m experiments.real_student --report      # docs/real-student.md's tables from the JSON

Each student runs in a workspace of its own (bench/workspace.py) with its stage functions
called in order in one process (as experiments/loop.py does; the stage code is what
`dvc repro` runs). Results go to experiments/real_student.json after every generation
and after every stage; the workspaces stay under --work, so a rerun (with as many or more
`--generations`) goes on after the last finished generation of each student; the report compares the two students
at equal wall time: each SmolLM2 generation beside the built-in generation that had
finished by the same elapsed seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from bench import ROOT, commit, cpu_model, workspace
from experiments.loop import link_model, measure, run_stage

OUT = ROOT / "experiments" / "real_student.json"
WORK = Path(tempfile.gettempdir()) / "flywheel-real-student"  # kept between runs: a rerun resumes there
PROFILES = {"smollm2": ROOT / "profiles" / "smollm2.yaml", "builtin": None}
STAGES = ("generate", "judge", "compose", "train", "evaluate", "probe", "expand")


def overrides(student: str, generations: int) -> dict:
    over = yaml.safe_load(PROFILES[student].read_text()) if PROFILES[student] else {}
    return workspace.merge(over, {"generations": workspace.generations(generations),
                                  "publish": {"git_commit": False, "git_tag": False, "dvc_push": False}})


def run(student: str, generations: int, work: Path, save, done: dict | None = None) -> dict:
    """One student's generations in the workspace `work/<student>`; `save(result)` after
    each stage. With `done` (what an earlier run of this workspace saved), it goes on
    after the last finished generation (its expansion first, where that did not run)."""
    from flywheel import stage
    from flywheel.config import TrainConfig

    stage.offline()
    params = overrides(student, generations)
    dest = work / student
    resume = bool(done and done["generations"]) and (dest / "params.yaml").exists()
    if resume:
        workspace.write_params(dest, params)  # as many generations as this run asks for
    else:
        shutil.rmtree(dest, ignore_errors=True)
        workspace.make_project(dest, params, git=False)
        done = None
    link_model(dest, params)
    gens = list(workspace.generations(generations))
    result: dict = done or {"generations": [], "seconds": {}}
    result.pop("running", None)
    home = Path.cwd()
    os.chdir(dest)
    try:
        start = time.monotonic()
        if not resume:
            run_stage("prepare", "")
            result["seconds"]["prepare"] = round(time.monotonic() - start, 1)
        elapsed = result["generations"][-1]["elapsed_s"] if resume else result["seconds"]["prepare"]
        last = result["generations"][-1] if resume else None
        if last and "expand" not in last["stage_seconds"] and last["generation"] != gens[-1]:
            start = time.monotonic()
            run_stage("expand", last["generation"])  # the finished generation was the last of a shorter run
            last["stage_seconds"]["expand"] = round(time.monotonic() - start, 1)
            elapsed = last["elapsed_s"] = round(elapsed + last["stage_seconds"]["expand"], 1)
        for g in gens[len(result["generations"]):]:
            times = {}
            for name in STAGES:
                if name == "expand" and g == gens[-1]:
                    continue
                start = time.monotonic()
                run_stage(name, g)
                times[name] = round(time.monotonic() - start, 1)
                save(result | {"running": {"generation": g, "stage_seconds": times}})  # what a cut-off run had done
            elapsed += sum(times.values())
            row = measure(dest, [g])[0]
            model = dest / "data" / g / "model"
            train = TrainConfig.model_validate(yaml.safe_load((dest / "params.yaml").read_text())["train"])
            row |= {"stage_seconds": times, "elapsed_s": round(elapsed, 1), "commit": commit(),
                    "train": train.model_dump(include={"steps", "batch_size", "lr", "prefix_grad"}),
                    "model_mb": round(sum(f.stat().st_size for f in model.rglob("*") if f.is_file()) / 2**20, 2)}
            result["generations"].append(row)
            save(result)
    finally:
        os.chdir(home)
    return result


def report(root: Path = ROOT) -> str:
    """The tables of docs/real-student.md (tools/docs.py block `real_student`)."""
    path = root / "experiments" / "real_student.json"
    if not path.exists():
        return "Not measured yet: `python -m experiments.real_student` writes experiments/real_student.json."
    data = json.loads(path.read_text())
    sm, bi = data["students"].get("smollm2"), data["students"].get("builtin")
    lines = [f"{data['cpu']}, 2 cores (the commit that made each generation in its row); SmolLM2-135M-Instruct with LoRA r 8 "
             "(profiles/smollm2.yaml) against the built-in student (params.yaml), each in a "
             "workspace of its own, stages called in order.", ""]
    for name, res in (("SmolLM2 (profiles/smollm2.yaml)", sm), ("built-in student (params.yaml)", bi)):
        if not res:
            continue
        lines += [f"## {name}", "", "| generation | commit | steps x rows | user | generator eval | " +
                  " | ".join(STAGES) + " | elapsed | checkpoint |", "|---|---|---|---|---|" + "---|" * len(STAGES) + "---|---|"]
        for r in res["generations"]:
            t = r["stage_seconds"]
            tr = r["train"]
            steps = f"{tr['steps']} x {tr['batch_size']}" + ("" if tr["prefix_grad"] else ", prefix without gradients")
            lines.append(f"| {r['generation']} | {r.get('commit', data['commit'])} | {steps} | {r['user']:.4f} | "
                         f"{r['eval']:.4f} | "
                         + " | ".join(f"{t[s]:.0f} s" if s in t else "" for s in STAGES)
                         + f" | {r['elapsed_s'] / 60:.1f} min | {r['model_mb']:.1f} MB |")
        lines.append("")
    if sm and bi:
        lines += ["## At equal wall time", "",
                  "| SmolLM2 generation | elapsed | user | built-in, same elapsed | user |", "|---|---|---|---|---|"]
        for r in sm["generations"]:
            done = [b for b in bi["generations"] if b["elapsed_s"] <= r["elapsed_s"]]
            b = done[-1] if done else None
            lines.append(f"| {r['generation']} | {r['elapsed_s'] / 60:.1f} min | {r['user']:.4f} | "
                         + (f"{b['generation']} ({b['elapsed_s'] / 60:.1f} min) | {b['user']:.4f} |" if b
                            else "none finished | |"))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--students", default="smollm2,builtin")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--work", type=Path, default=WORK, help="where the workspaces stay between runs (default %(default)s)")
    args = ap.parse_args(argv)
    data = json.loads(OUT.read_text()) if OUT.exists() else {"students": {}}
    if not args.report:
        for res in data["students"].values():  # rows of an earlier run name the commit that made them
            for row in res["generations"]:
                row.setdefault("commit", data.get("commit"))
        data |= {"commit": commit(), "cpu": cpu_model()}
        for student in [s.strip() for s in args.students.split(",") if s.strip()]:
            done = data["students"].get(student)
            if done and len(done["generations"]) >= args.generations:
                continue
            def save(result, student=student):
                data["students"][student] = result
                tmp = OUT.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1) + "\n")
                tmp.replace(OUT)

            run(student, args.generations, args.work, save, done)
    from tools.docs import write

    write()
    print(report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
