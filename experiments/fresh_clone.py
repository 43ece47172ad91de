"""A new user's first `make run`: a fresh clone of this repository's HEAD, `make setup`
(the venv from requirements.lock) and `make run` (the flywheel's three generations
through the Prefect flow with MLflow), each timed, with the package caches cold (empty
uv and pip caches of its own) or warm (the machine's). Then whether the run reproduced
the committed reference: the outputs whose md5 in the clone's dvc.lock differs from the
committed one (none, when it reproduced), and the `user` accuracy it reached.

    python -m experiments.fresh_clone --cache cold|warm [--out experiments/fresh_clone.json]

Each run appends to the output file (runs are 6 to 10 minutes; nothing else should run
beside one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT, commit, cpu_model
from flows.results import lock_md5s


def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> float:
    start = time.perf_counter()
    with log.open("a") as out:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}); the end of its output:\n"
                 + "\n".join(log.read_text().splitlines()[-40:]))
    return round(time.perf_counter() - start, 1)


def measure(cache: str, work: Path) -> dict:
    made_by = commit()
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", "--no-local", str(ROOT), str(clone)], check=True)
    committed = lock_md5s(clone)  # the outputs the commit's dvc.lock records
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_", "PIP_CACHE"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    if cache == "cold":
        env |= {"UV_CACHE_DIR": str(work / "uv-cache"), "PIP_CACHE_DIR": str(work / "pip-cache")}
    log = work / "make.log"
    setup = timed(["make", "setup"], clone, env, log)
    run = timed(["make", "run"], clone, env, log)
    made = lock_md5s(clone)
    user = {g: json.loads((clone / "data" / g / "metrics.json").read_text())["per_split"]["user"]
            for g in sorted(p.name for p in (clone / "data").glob("gen-*"))}
    return {"date": dt.date.today().isoformat(), "commit": made_by, "cpu": cpu_model(), "cache": cache,
            "seconds": {"setup": setup, "run": run, "total": round(setup + run, 1)},
            "outputs": len(made), "differ_from_committed": sorted(p for p in made if committed.get(p) != made[p]),
            "user": user}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", choices=("cold", "warm"), required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "fresh_clone.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flywheel-clone-") as tmp:
        result = measure(args.cache, Path(tmp))
    runs = json.loads(args.out.read_text()) if args.out.exists() else []
    runs.append(result)
    args.out.write_text(json.dumps(runs, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
