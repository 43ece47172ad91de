"""Two torch processes at once: the `train` stage alone, then two copies side by side, with
OpenMP's idle threads spinning (its default) and sleeping (`OMP_WAIT_POLICY=PASSIVE`).

Each stage sets torch to `train.threads` (2) threads. Two such processes on two cores
with spinning idle threads take their turns badly; with sleeping ones they share the
cores. Measured 2026-12-01, 3 turns (experiments/omp_contention.json): spinning, 14.7-15.7 s
alone and 40-65 s each for two at once; sleeping, 19.1-21.2 s alone and 17.4-19.1 s
each for two at once. So the test suite's two workers (tests/conftest.py) set PASSIVE
and a flywheel run, whose stages run one at a time, does not.

    python -m experiments.omp_contention [--steps 400] [--repeat 3] [--out experiments/omp_contention.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import ROOT
from bench.__main__ import TINY_FLYWHEEL
from bench.workspace import env, make_project, merge, run


POLICIES = {"default (spin)": None, "PASSIVE": "PASSIVE"}  # report name -> OMP_WAIT_POLICY (None: unset)


def _train(project: Path, policy: str | None) -> float:
    e = env()
    e.pop("OMP_WAIT_POLICY", None)
    if policy:
        e["OMP_WAIT_POLICY"] = policy
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tasks", "train", "gen-000"], cwd=project, env=e, check=True,
                   capture_output=True)
    return round(time.perf_counter() - start, 2)


def measure(steps: int, repeat: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-omp-"))
    try:
        a = make_project(work / "a", merge(TINY_FLYWHEEL, {"train": {"steps": steps}}), git=False)  # the benchmark's tiny one
        run([sys.executable, "-m", "dvc", "repro", "-q", "compose@gen-000"], a)
        b = work / "b"
        shutil.copytree(a, b, symlinks=True)
        out = {name: {"alone_s": [], "two_at_once_s": []} for name in POLICIES}
        for _ in range(repeat):  # the policies take turns, so a slow spell of the machine hits both
            for name, policy in POLICIES.items():
                r = out[name]
                r["alone_s"].append(_train(a, policy))
                with ThreadPoolExecutor(2) as pool:
                    r["two_at_once_s"].extend(pool.map(lambda p: _train(p, policy), (a, b)))
        return {"steps": steps, "threads_per_process": 2, "cores": os.cpu_count(), "repeat": repeat, "runs": out}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3, help="measurements of each policy, taken in turn")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "omp_contention.json")
    args = ap.parse_args(argv)
    results = measure(args.steps, args.repeat)
    for policy, r in results["runs"].items():
        print(f"{policy:>16}: alone {', '.join(f'{s:.1f}' for s in r['alone_s'])} s; "
              f"two at once {', '.join(f'{s:.1f}' for s in r['two_at_once_s'])} s")
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
