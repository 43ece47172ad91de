"""Benchmarks and experiments: `python -m bench` (performance, see docs/benchmarks.md) and
`python -m bench.loop` (the loop experiment, see docs/loop.md)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
