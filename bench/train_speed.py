"""Benchmark 7: training throughput of the default student, and of a student of your own.

The same model (params.yaml's `prepare.model`, fresh from the same seed) trains on the
same batches twice: once through the built-in student's `train_loop` (what the `train` stage runs:
batching and padding per step, LR schedule, gradient clipping, loss bookkeeping) and once
in a bare torch loop over pre-padded batches (forward, backward, AdamW step; nothing
else). Rounds alternate between the two so that drift in the machine hits both alike.
Tokens are the non-padding tokens of the batches processed.

`measure_hf` does the same for a Hugging Face student (flywheel/student/hf.py): a Llama
built on the spot (bench/hf_models.py), trained through `HFStudent.fit` (transformers'
Trainer, what `train` runs for `student.model`) and through a bare torch loop over the
same rows, batch size and optimizer, fully tuned and with LoRA.
"""

from __future__ import annotations

import os
import random
import time


from bench import ROOT
from flywheel import kernels


def _pairs(n: int, seed: int):
    from flywheel.student.codec import Codec
    from flywheel.toolcall import calls
    from flywheel.toolcall import phrasings
    from flywheel.toolcall.phrasings import SKILLS
    from flywheel.toolcall.sets import lexicon
    from flywheel.vocab import train_bpe_tokenizer

    rng = random.Random(seed)
    from flywheel.config import load

    vocab = load(ROOT / "params.yaml").domain.llm.tokenizer_vocab
    codec = Codec(train_bpe_tokenizer(lexicon(rng), vocab))
    reqs = [phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)])) for i in range(n)]
    return codec, [(codec.prompt(r.text), codec.target(calls.render(r.calls))) for r in reqs]


def matmul_limit(tokens: int, answer_tokens: int, *, n_embd: int, n_layer: int, vocab: int,
                 rounds: int = 20) -> dict:
    """What the 2 cores can do for this model's matrix products, timed in this process:
    a step's products (per layer the four projections at `tokens` rows, then the output
    head at `answer_tokens` rows, the only ones the loss reads; each forward and its two
    backward products), through the student's own product path (OpenBLAS,
    flywheel/student/gpt2.py) and through torch's `mm` (MKL) for comparison. The limit in
    tokens/s counts only those products: every other op is taken as free."""
    import numpy as np
    import torch

    shapes = [(tokens, n_embd, 3 * n_embd), (tokens, n_embd, n_embd), (tokens, n_embd, 4 * n_embd),
              (tokens, 4 * n_embd, n_embd)] * n_layer
    shapes.append((answer_tokens, n_embd, vocab))
    rs = np.random.RandomState(0)
    mats = [tuple(rs.standard_normal(s).astype(np.float32) for s in ((m, k), (k, n), (m, n)))
            for m, k, n in shapes]
    flop = sum(3 * 2 * m * k * n for m, k, n in shapes)

    def blas():
        for x, w, g in mats:
            x @ w, g @ w.T, x.T @ g

    tmats = [tuple(torch.from_numpy(a) for a in m) for m in mats]

    def mkl():
        for x, w, g in tmats:
            x @ w, g @ w.T, x.T @ g

    out = {}
    for name, fn in (("openblas", blas), ("torch_mkl", mkl)):
        fn()
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        seconds = (time.perf_counter() - start) / rounds
        out[name] = {"gflop_per_s": round(flop / seconds / 1e9, 1), "tokens_per_s": round(tokens / seconds)}
    out["mflop_per_token"] = round(flop / tokens / 1e6, 2)
    return out


def measure(*, steps: int = 60, rounds: int = 3, rows: int = 2000) -> dict:
    import torch

    from flywheel.config import load
    from flywheel.student import builtin
    from flywheel.student.batches import IGNORE, bucketed, pad_batch

    cfg = load(ROOT / "params.yaml")
    tc, arch = cfg.train.model_dump(), cfg.prepare.model.model_dump()
    builtin.set_threads(tc["threads"])
    codec, pairs = _pairs(rows, seed=0)
    vocab = codec.tok.get_vocab_size()

    # The batches train_loop draws (same seed, same bucketing), for the bare loop.
    rng, lengths, todo, batches = random.Random(1), [len(p) + len(t) for p, t in pairs], [], []
    for _ in range(steps):
        if not todo:
            todo = bucketed(rng, lengths, tc["batch_size"])
        batches.append(pad_batch([pairs[i] for i in todo.pop()], codec.pad))
    tokens = sum(int(mask.sum()) for _, _, mask in batches)
    answer_tokens = sum(int((labels != IGNORE).sum()) for _, labels, _ in batches)

    def flywheel_loop() -> float:
        model = builtin.build_model(vocab, seed=0, eos_token_id=codec.eos, pad_token_id=codec.pad, **arch)
        start = time.perf_counter()
        builtin.train_loop(model, pairs, steps=steps, batch_size=tc["batch_size"], lr=tc["lr"],
                      warmup_steps=tc["warmup_steps"], weight_decay=tc["weight_decay"], seed=1, pad=codec.pad)
        return time.perf_counter() - start

    def bare_loop() -> float:
        model = builtin.build_model(vocab, seed=0, eos_token_id=codec.eos, pad_token_id=codec.pad, **arch)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"], fused=True)
        start = time.perf_counter()
        for ids, labels, mask in batches:
            loss = builtin.answer_losses(model, ids, mask, labels).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        loss.item()
        return time.perf_counter() - start

    flywheel_loop(), bare_loop()  # warm-up: allocator, kernels (not timed)
    times = {"flywheel": [], "bare": []}
    for _ in range(rounds):
        times["flywheel"].append(flywheel_loop())
        times["bare"].append(bare_loop())
    fw, bare = min(times["flywheel"]), min(times["bare"])
    limit = matmul_limit(round(tokens / steps), round(answer_tokens / steps), n_embd=arch["n_embd"], n_layer=arch["n_layer"], vocab=vocab)
    return {"matmul_limit": limit, "share_of_matmul_limit": round(tokens / fw / limit["openblas"]["tokens_per_s"], 3),
            "kernels": {k: os.environ.get(k, "") for k in kernels.PINNED},
            "steps": steps, "batch_size": tc["batch_size"], "threads": tc["threads"], "rounds": rounds,
            "tokens_per_run": tokens, "answer_tokens_per_run": answer_tokens, "flywheel_tokens_per_s": round(tokens / fw),
            "bare_torch_tokens_per_s": round(tokens / bare), "ratio": round(bare / fw, 3),
            "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()},
            "parameters": sum(p.numel() for p in builtin.build_model(vocab, seed=0, eos_token_id=codec.eos, pad_token_id=codec.pad, **arch).parameters()),
            "target": "ratio >= 0.9"}


def measure_hf(*, steps: int = 40, rounds: int = 2, rows: int = 800, width: int = 256, layers: int = 4) -> dict:
    import tempfile
    from pathlib import Path

    import torch

    from bench.hf_models import tiny_llama
    from flywheel import domain
    from flywheel.student import builtin, hf
    from flywheel.config import DomainConfig, StudentConfig, TrainConfig
    from flywheel.toolcall import calls
    from flywheel.toolcall import phrasings
    from flywheel.toolcall.phrasings import SKILLS

    from flywheel.config import load

    tc = load(ROOT / "params.yaml").train.model_dump()
    builtin.set_threads(tc["threads"])
    rng = random.Random(0)
    reqs = [phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)])) for i in range(rows)]
    requests, labels = [r.text for r in reqs], [calls.dumps(r.calls) for r in reqs]
    dom = domain.get(DomainConfig())
    work = Path(tempfile.mkdtemp(prefix="bench-hf-"))
    tiny_llama(work / "base", requests + labels, width=width, layers=layers)
    batch = 16
    train = TrainConfig(steps=steps, batch_size=batch, lr=1e-3, warmup_steps=2, log_every=steps)
    out = {"steps": steps, "batch_size": batch, "rounds": rounds, "width": width, "layers": layers,
           "target": "ratio >= 0.9"}
    for mode, lora in (("full", {"r": 0}), ("lora", {"r": 16, "alpha": 32, "target_modules": ["q_proj", "v_proj"]})):
        cfg = StudentConfig(model=str(work / "base"), lora=lora, max_length=512)
        seed_dir = work / f"seed-{mode}"
        seed_dir.mkdir()
        hf.HFStudent.untrained(cfg, dom, seed_dir)

        def fresh():
            return hf.HFStudent.load(seed_dir, dom, trainable=True)

        probe = fresh()
        pairs = [probe.pair(r, label) for r, label in zip(requests, labels)]
        order = random.Random(1)
        batches = [hf.collate(order.sample(pairs, batch), probe.tok.pad_token_id)
                   for _ in range(steps)]
        tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        mean_len = sum(len(p) + len(t) for p, t in pairs) / len(pairs)

        def trainer_loop() -> float:
            st = fresh()
            start = time.perf_counter()
            st.fit(requests, labels, train=train, student=cfg, seed=1)
            return time.perf_counter() - start

        def bare_loop() -> float:
            model = fresh().model
            model.train()
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
            start = time.perf_counter()
            for b in batches:
                loss = model(**b).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            loss.item()
            return time.perf_counter() - start

        trainer_loop(), bare_loop()  # warm-up
        times = {"trainer": [], "bare": []}
        for _ in range(rounds):
            times["trainer"].append(trainer_loop())
            times["bare"].append(bare_loop())
        trainer_tokens = mean_len * batch * steps  # Trainer samples its own batches: the same rows on average
        out[mode] = {"trainer_tokens_per_s": round(trainer_tokens / min(times["trainer"])),
                     "bare_torch_tokens_per_s": round(tokens / min(times["bare"])),
                     "ratio": round((trainer_tokens / min(times["trainer"])) / (tokens / min(times["bare"])), 3),
                     "parameters": probe.parameters,
                     "trained": sum(p.numel() for p in probe.model.parameters() if p.requires_grad),
                     "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()}}
    return out
