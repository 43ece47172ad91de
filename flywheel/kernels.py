"""The numeric kernels of every stage, pinned so that a stage writes the same bytes on
any x86-64 CPU: the one place this is set is `tasks/__init__.py`, which runs before a
stage module imports torch (ATen and MKL read these variables once, when they start).

What each variable does in torch 2.13.0+cpu was measured, not read (experiments/kernels.py,
docs/reproducibility.md): the same inputs hashed after each kernel, natively on an AMD
EPYC (Zen 3, AVX2) and under QEMU emulating an Intel Haswell (AVX2) and an AMD EPYC-Rome.

- `ATEN_CPU_CAPABILITY=avx2`: ATen's vectorised kernels (softmax, log-softmax, layer
  norm, GELU, the optimizer's element-wise ops) run their AVX2 build, which every x86-64
  CPU of the last decade has, instead of AVX-512 where a CPU has it. Honoured: `default`
  and `avx2` give different bytes for softmax, layer norm and GELU.
- The built-in student's matrix products (every layer and the output head) go through
  numpy's OpenBLAS (flywheel/gpt2.py `_Product`), with `OPENBLAS_CORETYPE=Haswell`:
  the same AVX2+FMA kernels on every CPU, chosen by name instead of by probing the CPU.
  Honoured: `SkylakeX` (AVX-512) kernels give other bytes and crash on an AVX2-only CPU.
  OpenBLAS's bytes depend on its thread count, so `OPENBLAS_NUM_THREADS` is pinned too
  (`THREADS`, one: answering is many small products, for which a second thread costs
  more than it gives, 40 s against 13 s for 512 answers; `train` sets its own from
  `train.threads`).
- `MKL_CBWR=COMPATIBLE` for what still reaches torch's MKL (attention's batched
  products, `torch.exp`, a Hugging Face student's layers). MKL picks kernels by CPU
  vendor as well as instruction set: under emulation of an Intel Haswell, a transposed
  matrix product and `exp` gave other bytes than on an AMD EPYC with the same AVX2, and
  MKL maps `MKL_CBWR=AVX2` to AUTO on AMD CPUs. COMPATIBLE gave the same bytes on both,
  at a third of MKL's speed for matrix products (which is why the student's own layers
  use OpenBLAS instead). Its bytes change with the thread count (4 threads against 1 to
  3), so `MKL_NUM_THREADS` and `OMP_NUM_THREADS` are pinned to one. One kernel COMPATIBLE
  does not hold: `torch.sqrt` is MKL's vector square root, off by one ulp in a sixth of
  its results and other bytes on another CPU (an Intel Xeon with AVX-512 against QEMU's
  EPYC-Rome), so the student's AdamW is the fused one (flywheel/student.py), whose root
  is the CPU's exact instruction.
- `ONEDNN_MAX_CPU_ISA=AVX2`: oneDNN, where torch reaches it, stays on AVX2 as well.

`FLYWHEEL_KERNELS=native` leaves the machine's own choices (faster on AVX-512, bytes of
its own); `make run` and `dvc repro` never set it.
"""

from __future__ import annotations

import os

THREADS = 1  # OpenBLAS threads of a stage that does not set its own (`train` does: train.threads)
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": str(THREADS),
    "MKL_CBWR": "COMPATIBLE",
    "MKL_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
SWITCH = "FLYWHEEL_KERNELS"


def pin(environ=os.environ) -> dict[str, str]:
    """Set the pinned variables in `environ` (this process and every child it starts);
    returns what was set. Must run before torch is imported to take effect."""
    if environ.get(SWITCH) == "native":
        return {}
    environ.update(PINNED)
    return dict(PINNED)
