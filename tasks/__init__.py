"""One module per stage of a flywheel generation; each is `python -m tasks.<stage>`.

DAG per generation: generate -> judge -> compose -> train -> evaluate -> probe -> expand,
after a one-off `prepare`. `dvc.yaml` chains them; see the README.

This package's import is where every stage process starts, before any stage module
imports torch: the numeric kernels are pinned here (flywheel/kernels.py), so a stage
writes the same bytes on any x86-64 CPU.
"""

from flywheel import kernels

kernels.pin()
