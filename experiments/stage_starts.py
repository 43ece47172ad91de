"""What a stage process pays before it does any work: the import of its module (python
-m tasks.<stage> imports it, then runs `main`), per stage, and whether it loads torch.
Each is the least of `rounds` fresh interpreters, after one untimed start that writes
the .pyc files.

    python -m experiments.stage_starts [--root DIR] [--rounds N] [--out FILE]

`--root` is a checkout to measure (another commit's worktree, for a before/after), run
with this venv's interpreter. experiments/stage_starts.json holds two such runs, `before`
(a worktree of 690d6ec) and `after`, put side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench import ROOT, commit

STAGES = ("prepare", "generate", "judge", "compose", "train", "evaluate", "probe", "expand")
PROBE = "import sys, tasks.{stage}; print('torch' in sys.modules)"


def start(root: Path, stage: str) -> tuple[float, bool]:
    began = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE.format(stage=stage)], cwd=root, capture_output=True,
                         text=True, check=True, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}).stdout
    return time.perf_counter() - began, out.strip() == "True"


def measure(root: Path = ROOT, *, rounds: int = 3) -> dict:
    stages = {}
    for stage in STAGES:
        start(root, stage)
        times = []
        for _ in range(rounds):
            seconds, torch = start(root, stage)
            times.append(seconds)
        stages[stage] = {"seconds": round(min(times), 2), "imports_torch": torch}
    return {"root": str(root), "commit": commit(root), "rounds": rounds, "stages": stages}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    result = measure(args.root.resolve(), rounds=args.rounds)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
