"""SmolLM2-135M-Instruct as the student, per row, on the paths the stages take (the
baseline: what has to get faster).

    python -m bench.smollm2_speed [--rows 16]     # writes bench/smollm2_speed.json

On the shipped catalog (its 12 tools in the system message, SmolLM2's format), with the
stages' pinned kernels (bench/__init__.py) and 2 threads, for `--rows` requests:
- answer: greedy decoding as judge, evaluate and probe ask it (batched, left-padded,
  max_new_tokens 64);
- label losses: the probe's teacher-forced loss pass (full-vocabulary logits);
- train: LoRA r 8 on q/k/v/o, steps of 4 rows;
with the prompt length in tokens and the process's peak memory.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from pathlib import Path

from bench import ROOT, commit, cpu_model

OUT = ROOT / "bench" / "smollm2_speed.json"


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
    out: dict = {"commit": commit(), "cpu": cpu_model(), "rows": rows, "threads": 2}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "smollm2"
        convert(base)
        cfg = StudentConfig(model=str(base), max_length=2048,
                            lora=LoraConfig(r=8, alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
        (Path(tmp) / "s").mkdir()
        hf.HFStudent.untrained(cfg, dom, Path(tmp) / "s")
        st = hf.HFStudent.load(Path(tmp) / "s", dom, trainable=True, seed=0, threads=2)
        out["prompt_tokens"] = sum(len(st.prompt_ids(r)) for r in requests) / rows
        out["tools_in"] = st.manifest.get("tools_in", "template")
        st.model.eval()
        start = time.perf_counter()
        st.answer(requests, batch_size=rows, max_new_tokens=64)
        out["answer_s_per_row"] = round((time.perf_counter() - start) / rows, 3)
        start = time.perf_counter()
        st.label_losses(requests, labels, batch_size=rows)
        out["label_losses_s_per_row"] = round((time.perf_counter() - start) / rows, 3)
        st.model.train()
        start = time.perf_counter()
        st.fit(requests, labels, train=TrainConfig(steps=4, batch_size=4, lr=0.001, warmup_steps=1, log_every=2),
               student=cfg, seed=0)
        out["train_s_per_row"] = round((time.perf_counter() - start) / 16, 3)
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    result = measure(parser.parse_args(argv).rows)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
