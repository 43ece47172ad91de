"""The numeric kernels of every stage, pinned so that a stage writes the same bytes on
any x86-64 CPU with AVX2. `pin()` sets them in a process's environment; it must run
before numpy or torch is imported (numpy, ATen and MKL read these variables once, when
they load). The stage launcher (`python -m tasks <stage>`, tasks/__main__.py) calls it
first thing, and `require()` is how a stage started some other way gets them: it starts
the process again under the pin.

What each variable does in torch 2.13.0+cpu was measured, not read (experiments/kernels.py,
docs/reproducibility.md): the same inputs hashed after each kernel, natively on an AMD
EPYC (Zen 3, AVX2) and under QEMU emulating an Intel Haswell (AVX2) and an AMD EPYC-Rome.

- `ATEN_CPU_CAPABILITY=avx2`: ATen's vectorised kernels (softmax, log-softmax, layer
  norm, GELU, the optimizer's element-wise ops) run their AVX2 build, which every x86-64
  CPU of the last decade has, instead of AVX-512 where a CPU has it. Honoured: `default`
  and `avx2` give different bytes for softmax, layer norm and GELU.
- The built-in student's matrix products (every layer and the output head) go through
  numpy's OpenBLAS (flywheel/student/gpt2.py `_Product`), with `OPENBLAS_CORETYPE=Haswell`:
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
  EPYC-Rome), so the student's AdamW is the fused one (flywheel/student/), whose root
  is the CPU's exact instruction.
- `ONEDNN_MAX_CPU_ISA=AVX2`: oneDNN, where torch reaches it, stays on AVX2 as well.
- `NPY_DISABLE_CPU_FEATURES`: numpy's own SIMD loops dispatch by CPU too, and its
  AVX-512 builds (`X86_V4` and up) of `exp` and `log` are other code than the AVX2
  machine's (float64 `exp` has a SIMD loop only for AVX-512; elsewhere it is libm's).
  The probe's perplexity, `exp(loss)`, gave other bytes on an Intel Xeon with AVX-512
  than on an AMD EPYC, with the same losses. With those targets off, numpy runs its
  AVX2 loops on both. The names are numpy 2.4's dispatch targets (a name numpy does not
  dispatch is ignored with an ImportWarning, so a new numpy needs this list checked).

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
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
SWITCH = "FLYWHEEL_KERNELS"


def pin(environ=os.environ) -> dict[str, str]:
    """Set the pinned variables in `environ` (this process and every child it starts);
    returns what was set. Must run before numpy or torch is imported to take effect."""
    if environ.get(SWITCH) == "native":
        return {}
    environ.update(PINNED)
    return dict(PINNED)


def pinned(environ=os.environ) -> bool:
    """Does `environ` hold the pin (or ask for the machine's own kernels)?"""
    return environ.get(SWITCH) == "native" or all(environ.get(k) == v for k, v in PINNED.items())


def require(argv: list[str]) -> None:
    """Run this process under the pin: if its environment lacks it (numpy and torch are
    loaded already, too late to change), start `argv` again, in place of this process,
    with the pin set. The stage launcher sets it before anything loads, so a DVC stage
    never pays for the second start; `python -m tasks.<stage>` typed by hand does."""
    if pinned():
        return
    import sys

    pin()
    os.execv(sys.executable, [sys.executable, *argv])
