"""Benchmarks and experiments: `python -m bench` (performance, see docs/benchmarks.md) and
`python -m bench.expansion` (the expansion experiment, see docs/expansion.md)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
