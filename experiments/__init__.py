"""Experiments: runs that answer a question about the flywheel, each with its report
beside it (`python -m experiments.loop`, `make experiment`: the loop experiment,
docs/loop.md; `experiments.ablation`, `make ablation`: the levers of the `user` split;
OMP contention, stage starts, kernels, a fresh clone, the plan mix, your own tools).
`make bench` measures performance in bench/; both share bench/workspace.py and
bench/stats.py. Importing this package pins the numeric kernels, as bench/ does."""

from bench import ROOT  # noqa: F401  (and pins the kernels)
