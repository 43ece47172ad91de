"""Benchmarks: `python -m bench` (`make bench`), the flywheel's performance next to its
baselines (docs/benchmarks.md). The experiments are in experiments/; both share this
package's workspace (bench/workspace.py) and statistics (bench/stats.py) helpers.

They measure what the stages run, so they run on the stages' pinned kernels
(flywheel/kernels.py), set here before anything imports torch."""

from pathlib import Path

from flywheel import kernels

kernels.pin()

ROOT = Path(__file__).resolve().parents[1]
