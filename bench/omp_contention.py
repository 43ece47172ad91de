"""Two torch processes at once: the `train` stage alone, then two copies side by side, with
OpenMP's idle threads spinning (its default) and sleeping (`OMP_WAIT_POLICY=PASSIVE`).

Each stage sets torch to `train.threads` (2) threads. Two such processes on two cores
with spinning idle threads take their turns badly; with sleeping ones they share the
cores. Nothing sets PASSIVE yet: a process alone measured 16.4 and 16.6 s in one try and
16.5 and 21.2 s in another, so whether it slows a stage that runs alone is not settled.
Running the test suite in two workers (pytest-xdist) would need it.

    python -m bench.omp_contention [--steps 400] [--out bench/omp_contention.json]
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


def _train(project: Path, policy: str | None) -> float:
    e = env()
    e.pop("OMP_WAIT_POLICY", None)
    if policy:
        e["OMP_WAIT_POLICY"] = policy
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tasks.train", "gen-000"], cwd=project, env=e, check=True,
                   capture_output=True)
    return round(time.perf_counter() - start, 2)


def measure(steps: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-omp-"))
    try:
        a = make_project(work / "a", merge(TINY_FLYWHEEL, {"train": {"steps": steps}}), git=False)  # the benchmark's tiny one
        run([sys.executable, "-m", "dvc", "repro", "-q", "compose@gen-000"], a)
        b = work / "b"
        shutil.copytree(a, b, symlinks=True)
        out = {}
        for policy in (None, "PASSIVE"):
            alone = _train(a, policy)
            with ThreadPoolExecutor(2) as pool:
                pair = list(pool.map(lambda p: _train(p, policy), (a, b)))
            out[policy or "default (spin)"] = {"alone_s": alone, "two_at_once_s": pair}
        return {"steps": steps, "threads_per_process": 2, "cores": os.cpu_count(), "runs": out}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "omp_contention.json")
    args = ap.parse_args(argv)
    results = measure(args.steps)
    for policy, r in results["runs"].items():
        print(f"{policy:>16}: alone {r['alone_s']:.1f} s, two at once {' and '.join(f'{s:.1f}' for s in r['two_at_once_s'])} s")
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
