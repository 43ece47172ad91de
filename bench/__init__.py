"""Benchmarks and experiments: `python -m bench` (performance, see docs/benchmarks.md) and
`python -m bench.loop` (the loop experiment, see docs/loop.md).

They measure what the stages run, so they run on the stages' pinned kernels
(flywheel/kernels.py), set here before anything imports torch."""

from pathlib import Path

from flywheel import kernels

kernels.pin()

ROOT = Path(__file__).resolve().parents[1]
