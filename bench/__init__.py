"""Benchmarks: `python -m bench` (`make bench`), the flywheel's performance next to its
baselines (docs/benchmarks.md). The experiments are in experiments/; both share this
package's workspace (bench/workspace.py) and statistics (bench/stats.py) helpers.

They measure what the stages run, so they run on the stages' pinned kernels
(flywheel/kernels.py), set here before anything imports torch."""

import platform
import subprocess
from pathlib import Path

from flywheel import kernels

kernels.pin()

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU model every measured number names (/proc/cpuinfo's `model name`)."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown"


def commit(root: Path = ROOT) -> str:
    """The short commit every measured number names (`unknown` outside git)."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"
