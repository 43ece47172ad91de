"""The real-student profile measured: generations of the flywheel with SmolLM2-135M-Instruct
(profiles/smollm2.yaml) beside the built-in student (params.yaml as it is), `user` and
the generator's evaluation splits per generation, seconds per stage, and the registry's
size per version.

    python -m experiments.real_student [--generations 3] [--students smollm2,builtin]
    python -m experiments.real_student --report      # docs/real-student.md's tables from the JSON

Each student runs in a fresh workspace (bench/workspace.py) with its stage functions
called in order in one process (as experiments/loop.py does; the stage code is what
`dvc repro` runs). Results go to experiments/real_student.json after every generation
(a rerun resumes after the last finished student); the report compares the two students
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
PROFILES = {"smollm2": ROOT / "profiles" / "smollm2.yaml", "builtin": None}
STAGES = ("generate", "judge", "compose", "train", "evaluate", "probe", "expand")


def overrides(student: str, generations: int) -> dict:
    over = yaml.safe_load(PROFILES[student].read_text()) if PROFILES[student] else {}
    return workspace.merge(over, {"generations": workspace.generations(generations),
                                  "publish": {"git_commit": False, "git_tag": False, "dvc_push": False}})


def run(student: str, generations: int, work: Path, save) -> dict:
    """One student's generations; `save(result)` after each one."""
    from flywheel import stage

    stage.offline()
    params = overrides(student, generations)
    dest = workspace.make_project(work / student, params, git=False)
    link_model(dest, params)
    gens = list(workspace.generations(generations))
    result: dict = {"generations": [], "seconds": {}}
    home = Path.cwd()
    os.chdir(dest)
    try:
        elapsed = 0.0
        start = time.monotonic()
        run_stage("prepare", "")
        result["seconds"]["prepare"] = round(time.monotonic() - start, 1)
        elapsed += result["seconds"]["prepare"]
        for g in gens:
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
            row |= {"stage_seconds": times, "elapsed_s": round(elapsed, 1),
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
    lines = [f"Commit {data['commit']}, {data['cpu']}, 2 cores; SmolLM2-135M-Instruct with LoRA r 8 "
             "(profiles/smollm2.yaml) against the built-in student (params.yaml), each in a fresh "
             "workspace, stages called in order.", ""]
    for name, res in (("SmolLM2 (profiles/smollm2.yaml)", sm), ("built-in student (params.yaml)", bi)):
        if not res:
            continue
        lines += [f"## {name}", "", "| generation | user | generator eval | " + " | ".join(STAGES) +
                  " | elapsed | checkpoint |", "|---|---|---|" + "---|" * len(STAGES) + "---|---|"]
        for r in res["generations"]:
            t = r["stage_seconds"]
            lines.append(f"| {r['generation']} | {r['user']:.4f} | {r['eval']:.4f} | "
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
    args = ap.parse_args(argv)
    data = json.loads(OUT.read_text()) if OUT.exists() else {"students": {}}
    if not args.report:
        data |= {"commit": commit(), "cpu": cpu_model()}
        for student in [s.strip() for s in args.students.split(",") if s.strip()]:
            done = data["students"].get(student)
            if done and len(done["generations"]) >= args.generations:
                continue
            work = Path(tempfile.mkdtemp(prefix="flywheel-real-student-"))

            def save(result, student=student):
                data["students"][student] = result
                tmp = OUT.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1) + "\n")
                tmp.replace(OUT)

            try:
                run(student, args.generations, work, save)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    from tools.docs import write

    write()
    print(report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
