"""The pinned numeric kernels (flywheel/kernels.py): a stage process starts with them
(the launcher pins before anything loads; a stage started without it starts again under
the pin), every library honours them, and the student's own matrix products (numpy's OpenBLAS
instead of torch's MKL, flywheel/student/gpt2.py `_Product`) compute what torch's would, with
the same gradients. That the pin gives the same bytes on another CPU is what
tests/test_reference.py checks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch

from conftest import ROOT
from flywheel import kernels
from flywheel.student import builtin, gpt2

# What a stage process sees: the launcher (tasks/__main__.py) pins first, then the stage
# imports numpy and torch; a process started without the pin asks for it (`require`).
STAGE_VIEW = """
import json, os, sys
from flywheel import kernels
%s
import numpy, torch, threadpoolctl
%s
from numpy._core._multiarray_umath import __cpu_features__
torch.bmm(torch.ones(2, 64, 64), torch.ones(2, 64, 64))  # large enough to reach MKL
blas = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"]
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(),
                  "openblas": [[i["architecture"], i["num_threads"]] for i in blas],
                  "numpy_avx512": sorted(f for f, on in __cpu_features__.items() if on and f.startswith(("X86_V4", "AVX512"))),
                  "env": {k: os.environ.get(k) for k in %r}}))
"""


def stage_view(launcher: bool = True, **env) -> tuple[dict, str]:
    """Without `launcher`, the stage's own start: numpy and torch load, then the stage
    asks for the pin (flywheel/stage.py `run`)."""
    pin, require = ("kernels.pin()", "") if launcher else ("", "kernels.require(['-c', sys.argv[1], sys.argv[1]])")
    script = STAGE_VIEW % (pin, require, list(kernels.PINNED))
    proc = subprocess.run([sys.executable, "-c", script, script], cwd=ROOT, text=True,
                          capture_output=True, check=True, env={"PATH": "/usr/bin:/bin", **env})
    return json.loads(proc.stdout.splitlines()[-1]), proc.stdout + proc.stderr


def test_a_stage_process_runs_on_the_pinned_kernels_whatever_its_environment_asks():
    # The environment asks for other choices: the pin wins, because a stage's bytes must not
    # depend on who started it.
    seen, out = stage_view(MKL_VERBOSE="1", MKL_CBWR="AUTO", ATEN_CPU_CAPABILITY="default",
                           OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    assert seen["env"] == kernels.PINNED
    assert seen["capability"] == "AVX2"
    assert seen["openblas"] == [["Haswell", kernels.THREADS]]
    assert seen["numpy_avx512"] == []  # numpy's AVX-512 loops are off, where a CPU has them
    assert "CNR:COMPATIBLE" in out  # MKL's own report of the branch it ran


def test_a_stage_started_without_the_pin_starts_again_under_it():
    # `python -m tasks.probe gen-000` typed by hand: numpy and torch are loaded before the
    # stage can pin, so `require` starts the process again (exec) with the pin set.
    seen, _ = stage_view(launcher=False, OPENBLAS_CORETYPE="SkylakeX", NPY_DISABLE_CPU_FEATURES="")
    assert seen["env"] == kernels.PINNED and seen["openblas"] == [["Haswell", kernels.THREADS]]
    assert seen["numpy_avx512"] == []


def test_native_switch_leaves_the_machine_its_own_choices():
    seen, out = stage_view(FLYWHEEL_KERNELS="native", MKL_VERBOSE="1", ATEN_CPU_CAPABILITY="default")
    assert seen["capability"] == "DEFAULT"
    assert "CNR:COMPATIBLE" not in out


def test_the_students_products_equal_torchs_with_the_same_gradients():
    rs = np.random.RandomState(3)
    x0 = torch.from_numpy(rs.standard_normal((37, 16)).astype(np.float32))
    w0 = torch.from_numpy(rs.standard_normal((16, 24)).astype(np.float32))
    grad = torch.from_numpy(rs.standard_normal((37, 24)).astype(np.float32))
    x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    xr, wr = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    out = gpt2._Product.apply(x, w.T.T)  # a view, as the output head passes its tied weight
    out.backward(grad)
    ref = xr @ wr
    ref.backward(grad)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(w.grad, wr.grad)


def test_every_layer_of_the_student_goes_through_the_pinned_products():
    model = builtin.build_model(50, n_layer=2, n_embd=16, n_head=2, n_positions=16, seed=0, eos_token_id=3,
                                pad_token_id=2)
    calls = []
    original = gpt2._Product.apply
    try:
        gpt2._Product.apply = lambda a, b: calls.append(tuple(b.shape)) or original(a, b)
        states, _ = model(torch.tensor([[5, 6, 7]]))
        model.head(states)
    finally:
        gpt2._Product.apply = original
    assert calls.count((16, 48)) == 2 and calls.count((64, 16)) == 2  # attention in, MLP out, per layer
    assert len(calls) == 2 * 4 + 1 and calls[-1] == (16, 50)  # four per layer, then the output head


def test_training_takes_no_square_root_from_mkl(monkeypatch):
    # torch.sqrt (and AdamW's foreach and per-tensor paths, which call it) is MKL's vector
    # maths: not correctly rounded, and other bytes on another CPU even under the pin
    # (docs/reproducibility.md). The fused AdamW computes its root in ATen's own kernel.
    def refuse(*args, **kwargs):
        raise AssertionError("a square root through MKL's vector maths")

    monkeypatch.setattr(torch, "sqrt", refuse)
    monkeypatch.setattr(torch, "_foreach_sqrt", refuse)
    monkeypatch.setattr(torch.Tensor, "sqrt", refuse)
    model = builtin.build_model(50, n_layer=1, n_embd=16, n_head=2, n_positions=32, seed=0, eos_token_id=3,
                                pad_token_id=2)
    before = [p.detach().clone() for p in model.parameters()]
    pairs = [([5, 6, 7, 8], [9, 10, 3]), ([11, 12], [13, 3])] * 4
    builtin.train_loop(model, pairs, steps=2, batch_size=4, lr=1e-2, warmup_steps=0, weight_decay=0.01, seed=0, pad=2)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
