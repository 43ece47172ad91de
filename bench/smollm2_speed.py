"""SmolLM2-135M-Instruct as the student, per row, on the paths the stages take, and what
share of the machine's matrix-product speed each reaches.

    python -m bench.smollm2_speed [--rows 16]     # writes bench/smollm2_speed.json

On the shipped catalog (its 12 tools in the system message, SmolLM2's format: prompts of
about 1,500 tokens, of which about 1,450 every row shares), 2 torch threads, for `--rows`
requests, once under the stages' pinned kernels (flywheel/kernels.py) and once under the
machine's own (`FLYWHEEL_KERNELS=native`), each in its own process:
- answer: greedy decoding of the untrained base, which writes prose up to
  max_new_tokens 64 (the worst case: every row decodes all 64 tokens);
- label losses: the probe's teacher-forced loss pass;
- train: LoRA r 8 on q/k/v/o, 4 steps of 4 rows;
- after that training: answers with `expected` labels (the judge's and the probe's path:
  rows the student would answer with their label are not decoded) and without (evaluate's
  path, max_new_tokens 0: the longest trained answer plus a margin);
- train without prefix gradients: the same 4 steps with `train.prefix_grad: false` (the
  shared prefix's forward pass only);
with the share of the matmul limit (torch `mm` at this model's shapes, timed here) that
training and decoding reach, and the process's peak memory. `before` is the same
measurement before the shared prefix, answer-only logits and label checks (commit
0713937), and `previous` the last measurement at another commit (pinned), both kept
from the file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT, commit, cpu_model
from flywheel import store

OUT = ROOT / "bench" / "smollm2_speed.json"
THREADS = 2


def mm_limit(hidden: int, inner: int, rows: int = 512, rounds: int = 10) -> float:
    """GFLOP/s of torch's `mm` on this model's layer shapes (`rows` tokens at a time)."""
    import torch

    shapes = [(rows, hidden, hidden), (rows, hidden, inner), (rows, inner, hidden)]
    mats = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
    flop = sum(2 * m * k * n for m, k, n in shapes)
    for a, b in mats:
        a @ b
    start = time.perf_counter()
    for _ in range(rounds):
        for a, b in mats:
            a @ b
    return flop * rounds / (time.perf_counter() - start) / 1e9


def measure(rows: int) -> dict:
    from flywheel import domain
    from flywheel.config import DomainConfig, LoraConfig, StudentConfig, TrainConfig
    from flywheel.student import hf
    from flywheel.toolcall import calls, phrasings
    from tools.smollm2 import convert

    rng = random.Random(0)
    reqs = [phrasings.make_request(rng, phrasings.spec_for_skill(rng, phrasings.SKILLS[i % len(phrasings.SKILLS)]))
            for i in range(rows)]
    requests, labels = [r.text for r in reqs], [calls.dumps(r.calls) for r in reqs]
    dom = domain.get(DomainConfig())
    out: dict = {"rows": rows, "threads": THREADS}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "smollm2"
        convert(base)
        cfg = StudentConfig(model=str(base), max_length=2048,
                            lora=LoraConfig(r=8, alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
        (Path(tmp) / "s").mkdir()
        hf.HFStudent.untrained(cfg, dom, Path(tmp) / "s")
        st = hf.HFStudent.load(Path(tmp) / "s", dom, trainable=True, seed=0, threads=THREADS)
        config = st.model.config
        layer = sum(p.numel() for n, p in st.model.named_parameters() if ".layers." in n and "lora" not in n
                    and p.dim() == 2)
        head = config.vocab_size * config.hidden_size
        prompts = [st.prompt_ids(r) for r in requests]
        shared = hf.shared_prefix(prompts)
        own = sum(len(p) - shared for p in prompts)
        out |= {"prompt_tokens": round(sum(map(len, prompts)) / rows, 1), "shared_prefix_tokens": shared,
                "tools_in": st.manifest.get("tools_in", "template")}
        limit = mm_limit(config.hidden_size, config.intermediate_size)
        out["mm_gflop_per_s"] = round(limit, 1)
        st.model.eval()

        def timed(fn) -> float:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        texts: list[str] = []
        seconds = timed(lambda: texts.extend(st.answer(requests, batch_size=rows, max_new_tokens=64, raw=True)))
        made = sum(len(st.tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)
        out["answer_s_per_row"] = round(seconds / rows, 3)
        out["answer_share_of_matmul_limit"] = round(
            2 * (layer * (shared + own + made) + head * made) / seconds / 1e9 / limit, 3)
        out["label_losses_s_per_row"] = round(timed(lambda: st.label_losses(requests, labels, batch_size=rows)) / rows, 3)
        st.model.train()
        steps, batch = 4, 4
        pairs = [st.pair(r, label) for r, label in zip(requests, labels)]

        def train(prefix_grad: bool) -> float:  # seconds of `steps` LoRA steps of `batch` rows
            return timed(lambda: st.fit(requests, labels, student=cfg, seed=0, train=TrainConfig(
                steps=steps, batch_size=batch, lr=0.001, warmup_steps=1, log_every=2, prefix_grad=prefix_grad)))

        seconds = train(True)
        out["train_s_per_row"] = round(seconds / (steps * batch), 3)
        tail = sum(len(p) - shared + len(a) for p, a in pairs) / rows  # a row's own tokens, answer included
        # LoRA: the frozen layers' forward and input gradients (4 flop per weight and token); the head on the row's tokens
        flop = steps * (4 * layer * (shared + batch * tail) + 4 * head * batch * tail)
        out["train_share_of_matmul_limit"] = round(flop / seconds / 1e9 / limit, 3)
        st.model.eval()
        got: list[str] = []
        seconds = timed(lambda: got.extend(st.answer(requests, batch_size=rows, max_new_tokens=0, expected=labels)))
        out["answer_with_labels_s_per_row"] = round(seconds / rows, 3)
        out["rows_answered_from_labels"] = int(sum(st._forced(prompts, [a for _, a in pairs], rows)[1]))
        st._forced_memo = {}
        out["answer_auto_length_s_per_row"] = round(
            timed(lambda: st.answer(requests, batch_size=rows, max_new_tokens=0)) / rows, 3)
        out["max_new_tokens_auto"] = st.manifest["longest_answer"] + hf.ANSWER_MARGIN
        st.model.train()  # the same steps with the prefix run without gradients (train.prefix_grad false)
        seconds = train(False)
        out["train_no_prefix_grad_s_per_row"] = round(seconds / (steps * batch), 3)
        flop = steps * (2 * layer * shared + 4 * layer * batch * tail + 4 * head * batch * tail)
        out["train_no_prefix_grad_share_of_matmul_limit"] = round(flop / seconds / 1e9 / limit, 3)
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--kernels", default="pinned,native", help="which kernels to measure under (comma-separated)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: this process's kernels
    args = parser.parse_args(argv)
    if args.one:
        import torch

        torch.set_num_threads(THREADS)
        print("RESULT " + json.dumps(measure(args.rows)))
        return 0
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    previous = old.get("previous")
    if old.get("after", {}).get("pinned") and old.get("commit") != commit():  # the last measurement, kept beside
        previous = {"commit": old["commit"], **old["after"]["pinned"]}
    result = {"commit": commit(), "cpu": cpu_model(), "before": old.get("before"), "previous": previous, "after": {}}
    for kernels in [k.strip() for k in args.kernels.split(",") if k.strip()]:
        env = dict(os.environ, FLYWHEEL_KERNELS="native") if kernels == "native" else \
            {k: v for k, v in os.environ.items() if k != "FLYWHEEL_KERNELS"}
        run = subprocess.run([sys.executable, "-m", "bench.smollm2_speed", "--one", "--rows", str(args.rows)],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(f"bench.smollm2_speed ({kernels}): {run.stderr.strip().splitlines()[-1:]}")
        result["after"][kernels] = json.loads(run.stdout.split("RESULT ", 1)[1].splitlines()[0])
    store.write_json(result, OUT)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
