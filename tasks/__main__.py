"""`python -m tasks <stage> [generation]`: the command every `dvc.yaml` stage runs.

It pins the numeric kernels (flywheel/kernels.py) in this process's environment first,
before the stage module imports numpy or torch, so a stage writes the same bytes on any
x86-64 CPU with AVX2, then runs `tasks/<stage>.py` as its `__main__`.
"""

import runpy
import sys

from flywheel import kernels
from flywheel.layout import STAGES

kernels.pin()
if len(sys.argv) < 2 or sys.argv[1] not in ("prepare", *STAGES):
    print(f"usage: python -m tasks {{{','.join(('prepare', *STAGES))}}} [GENERATION]", file=sys.stderr)
    sys.exit(2)
stage = sys.argv.pop(1)
runpy.run_module(f"tasks.{stage}", run_name="__main__", alter_sys=True)
