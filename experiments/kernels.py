"""Which settings the numeric kernels honour, measured: the same inputs (numpy-seeded)
through each kernel a stage uses, hashed, in fresh interpreters under chosen settings,
natively or under QEMU's user-mode emulation of another CPU (Debian's `qemu-user`:
`qemu-x86_64 -cpu Haswell` is an Intel AVX2 CPU, `-cpu EPYC-Rome` an AMD one, whatever
this machine is). Two settings that give the same hashes everywhere are the same
kernels; a hash that moves with the CPU is a kernel the pin does not hold.

    python -m experiments.kernels [--qemu Haswell,EPYC-Rome] [--out experiments/kernels.json]

flywheel/kernels.py chose its pin from this (docs/reproducibility.md). Under emulation
an interpreter takes a minute to import torch and the student's three training steps
several more; `--qemu-settings pinned` emulates the pin alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench import ROOT, cpu_model
from flywheel import kernels

PROBE = r"""
import hashlib, json, numpy as np, torch
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
rs = np.random.RandomState(0)
mk = lambda *s: rs.standard_normal(s).astype(np.float32)
a, b, c, d = mk(1800, 128), mk(128, 601), mk(1800, 512), mk(512, 128)
t = torch.from_numpy
h = lambda x: hashlib.md5(np.ascontiguousarray(x.detach().numpy() if hasattr(x, "detach") else x)
                           .tobytes()).hexdigest()[:8]
q = t(a[:1792]).reshape(64, 28, 4, 32).transpose(1, 2).contiguous()
x = t(a) @ t(b)
def student_steps():  # three steps of the built-in student's train_loop on the default sizes: the whole step
    from flywheel.student import builtin as student
    student.set_threads(1)
    m = student.build_model(300, seed=0, n_layer=2, n_embd=128, n_head=4, n_positions=64, eos_token_id=1,
                            pad_token_id=0)
    pairs = [([int(i) for i in rs.randint(2, 300, size=rs.randint(8, 20))],
              [int(i) for i in rs.randint(2, 300, size=rs.randint(4, 12))] + [1]) for _ in range(64)]
    student.train_loop(m, pairs, steps=3, batch_size=64, lr=3e-3, warmup_steps=0, weight_decay=0.01, seed=0, pad=0)
    return hashlib.md5(b"".join(p.detach().numpy().tobytes() for p in m.parameters())).hexdigest()[:8]
def probe_losses():  # tasks/probe.py: teacher-forced label losses, then their perplexity exp(loss)
    from flywheel.student import builtin as student
    student.set_threads(1)
    m = student.build_model(300, seed=0, n_layer=2, n_embd=128, n_head=4, n_positions=64, eos_token_id=1,
                            pad_token_id=0)
    pairs = [([int(i) for i in rs.randint(2, 300, size=rs.randint(8, 20))],
              [int(i) for i in rs.randint(2, 300, size=rs.randint(4, 12))] + [1]) for _ in range(64)]
    loss = student.label_losses(m, pairs, pad=0, batch_size=64)
    return h(loss), h(np.exp(np.minimum(loss * 40, 700.0)))
def adamw(**kw):
    p = torch.nn.Parameter(t(a).clone()); p.grad = t(a) * 0.01
    opt = torch.optim.AdamW([p], lr=3e-3, weight_decay=0.01, **kw)
    for _ in range(3): opt.step()
    return h(p)
print(json.dumps({
    "aten_capability": torch.backends.cpu.get_cpu_capability(),
    "torch.mm (MKL)": h(x), "torch.linear, transposed weight (MKL)": h(torch.nn.functional.linear(t(c), t(d).T)),
    "torch.bmm (MKL)": h(torch.matmul(q, q.transpose(-1, -2))), "torch.exp (MKL VML)": h(torch.exp(t(a))),
    "softmax (ATen)": h(torch.softmax(x, -1)), "layer_norm (ATen)": h(torch.nn.functional.layer_norm(t(a), (128,))),
    "gelu tanh (ATen)": h(torch.nn.functional.gelu(t(a), approximate="tanh")),
    "torch.sqrt (MKL VML)": h(torch.sqrt(t(a).abs())), "AdamW foreach (sqrt from MKL VML)": adamw(foreach=True),
    "AdamW fused (ATen)": adamw(fused=True), "student: 3 training steps": student_steps(),
    "numpy matmul NN (OpenBLAS)": h(a @ b), "numpy matmul NT (OpenBLAS)": h(c @ np.ascontiguousarray(d.T).T),
    "numpy matmul TN (OpenBLAS)": h(a.T @ c),
    "numpy exp float64 (numpy SIMD or libm)": h(np.exp(a.astype(np.float64))),
    "numpy log float64": h(np.log(np.abs(a.astype(np.float64)) + 1e-3)),
    "numpy exp float32": h(np.exp(a)), "numpy log float32": h(np.log(np.abs(a) + 1e-3)),
    "numpy SIMD targets in use": ",".join(sorted(f for f, on in __cpu_features__.items()
                                                 if on and f in __cpu_dispatch__)),
    **dict(zip(("probe: label losses", "probe: perplexity (numpy exp)"), probe_losses())),
}))
"""

SETTINGS = {  # name -> environment on top of the machine's own (nothing pinned)
    "native": {},
    "pinned": dict(kernels.PINNED),
    "MKL_CBWR=AVX2": {"MKL_CBWR": "AVX2"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
}


def run(settings: dict, cpu: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in kernels.PINNED} | {"FLYWHEEL_KERNELS": "native"}
    env |= settings
    cmd = ([] if cpu is None else ["qemu-x86_64", "-cpu", cpu]) + [sys.executable, "-c", PROBE]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qemu", default="", help="comma-separated QEMU CPU models to emulate as well")
    ap.add_argument("--qemu-settings", default=",".join(SETTINGS),
                    help="comma-separated settings to run under emulation (natively every setting runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "kernels.json")
    args = ap.parse_args(argv)
    results = {"machine": cpu_model(), "runs": []}
    for where in [None] + [c for c in args.qemu.split(",") if c]:
        for name, settings in SETTINGS.items():
            if where is not None and name not in args.qemu_settings.split(","):
                continue
            results["runs"].append({"cpu": where or f"native ({results['machine']})", "settings": name,
                                    "hashes": run(settings, where)})
            print(json.dumps(results["runs"][-1]), flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
