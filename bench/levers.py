"""One lever at a time, outside the DAG: train the default student once on N freshly
generated, correctly labelled requests and score it on the hand-written `user` split and
on the generator's held-out phrasings and values. Single seed; a probe of what the
tokenizer, the data and the training budget do, not the pipeline's numbers.

    python -m bench.levers ROWS STEPS N_LAYER N_EMBD BATCH [LR]
    MINF=20 python -m bench.levers 30000 2000 2 128 64 0.003   # copy tokenizer, words seen >= 20 times
    python -m bench.levers 20000 1000 2 128 64 0.003           # byte-level BPE of 2,000 pieces (MINF unset)
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

from bench import ROOT


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    from flywheel import domain
    from flywheel.config import DomainConfig
    from flywheel.student import Student, set_threads, train
    from flywheel.toolcall import calls as C
    from flywheel.toolcall import phrasings as P
    from flywheel.toolcall import sets
    from flywheel.toolcall.catalog import SKILLS
    from flywheel.vocab import train_bpe_tokenizer, train_copy_tokenizer

    n_rows, steps, n_layer, n_embd, batch = map(int, argv[:5])
    lr = float(argv[5]) if len(argv) > 5 else 3e-3
    min_count = int(os.environ.get("MINF", "0"))
    set_threads(2)
    rng = random.Random(0)
    lexicon = sets.lexicon(random.Random(1))
    tok = train_copy_tokenizer(lexicon, min_count) if min_count else train_bpe_tokenizer(lexicon, 2000)
    student = Student.build(tok, seed=0, n_layer=n_layer, n_embd=n_embd, n_head=4, n_positions=128)
    reqs = [P.make_request(rng, P.spec_for_skill(rng, SKILLS[i % len(SKILLS)])) for i in range(n_rows)]
    start = time.time()
    history = train(student.model, student.pairs([r.text for r in reqs], [C.render(r.calls) for r in reqs]),
                    steps=steps, batch_size=batch, lr=lr, warmup_steps=30, weight_decay=0.01, seed=1,
                    pad=student.codec.pad)
    seconds = time.time() - start
    dom = domain.get(DomainConfig())
    user = [json.loads(line) for line in (ROOT / "domains/toolcall/user.jsonl").read_text().splitlines() if line]
    held = [P.make_request(rng, P.spec_for_skill(rng, SKILLS[i % len(SKILLS)]), phrasing_sets=("heldout",),
                           value_split="heldout") for i in range(300)]

    def accuracy(requests, labels) -> float:
        ok = dom.score(labels, student.answer(requests, batch_size=128))
        return round(sum(ok) / len(ok), 3)

    print(json.dumps({"rows": n_rows, "steps": steps, "n_layer": n_layer, "n_embd": n_embd, "batch": batch, "lr": lr,
                      "tokenizer": f"copy, min count {min_count}" if min_count else "bpe 2000",
                      "vocabulary": tok.get_vocab_size(), "parameters": student.parameters,
                      "train_seconds": round(seconds), "final_loss": round(history[-1][1], 4),
                      "user": accuracy([u["input"] for u in user], [C.dumps(u["output"]) for u in user]),
                      "heldout": accuracy([r.text for r in held], [C.dumps(r.calls) for r in held])}))


if __name__ == "__main__":
    main(sys.argv[1:])
