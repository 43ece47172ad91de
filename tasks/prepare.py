"""Stage `prepare` (once, before generation 0): the seed set, the evaluation set, the
tokenizer, the first expansion plan and the untrained student. For `toolcall` they are
drawn from the domain's generator; for `llm` they come from the user's files under
`domain.path`.

Outputs: data/eval.parquet, data/tokenizer.json, and data/seed/ (train.parquet,
plan.parquet, an empty probe.parquet, model/), which generation 0 reads as its `prev`.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

from flywheel import layout, llm_domain, stage, store, student
from flywheel.config import Config, PrepareConfig
from flywheel.toolcall import calls as C
from flywheel.toolcall import phrasings as P
from flywheel.toolcall.catalog import FUNCTIONS, PHENOMENA, SKILLS
from tasks.compose import check_decontaminated

EVAL_KINDS = {  # kind -> (phrasing sets, value split)
    "seen": (("seed", "gen"), "train"),
    "new_values": (("seed", "gen"), "heldout"),
    "new_phrasing": (("heldout",), "train"),
}


def _draw(rng: random.Random, n: int, phrasing_sets, value_split, exclude: set[str]) -> list[P.Request]:
    """n distinct requests, skills spread uniformly, none of whose text is in `exclude`."""
    out: list[P.Request] = []
    seen = set(exclude)
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n:
            raise store.DataError(f"params.yaml: prepare: cannot draw {n} distinct requests; lower the count")
        req = P.make_request(rng, P.spec_for_skill(rng, SKILLS[tries % len(SKILLS)]),
                             phrasing_sets=phrasing_sets, value_split=value_split)
        if req.text not in seen:
            seen.add(req.text)
            out.append(req)
    return out


def eval_set(rng: random.Random, cfg: PrepareConfig) -> pd.DataFrame:
    rows = []
    for kind, share in sorted(cfg.eval_mix.items()):
        sets, values = EVAL_KINDS[kind]
        for req in _draw(rng, round(cfg.eval_rows * share), sets, values, {r["request"] for r in rows}):
            label = C.dumps(req.calls)
            rows.append({"id": store.row_id(req.text, label), "request": req.text, "label": label,
                         "skills": list(req.skills), "split": kind})
    return pd.DataFrame(rows)


def seed_set(rng: random.Random, cfg: PrepareConfig, eval_texts: set[str]) -> pd.DataFrame:
    rows = []
    for req in _draw(rng, cfg.seed_rows, ("seed",), "train", eval_texts):
        label = C.dumps(req.calls)
        rows.append({"id": store.row_id(req.text, label), "generation": layout.SEED, "source": "seed",
                     "parent_id": None, "skills": list(req.skills), "teacher": "seed", "request": req.text,
                     "label": label, "judge": "none"})
    return pd.DataFrame(rows)


def first_plan(rng: random.Random, seed: pd.DataFrame, n: int, *, toolcall: bool = True) -> pd.DataFrame:
    """Generation 0 asks for variations of the seed rows, round robin."""
    rows = []
    for i in range(n):
        parent = seed.iloc[i % len(seed)]
        fns = [c["name"] for c in C.loads(parent["label"])] if toolcall else []
        rows.append({"plan_id": store.row_id("seed-plan", str(i)), "parent_id": parent["id"], "functions": fns,
                     "skills": list(parent["skills"]), "kind": "seed_variation"})
    return pd.DataFrame(rows)


def lexicon(rng: random.Random) -> list[str]:
    """Texts the tokenizer learns its vocabulary from: the generator's phrasings with every
    value pool, and the catalog. Evaluation requests are not among them; words found only
    in held-out phrasings stay unknown to the student, as new words would be."""
    texts = []
    for split in ("train", "heldout"):
        for _ in range(4000):
            req = P.make_request(rng, P.spec_for_skill(rng, rng.choice(SKILLS)), value_split=split)
            texts.append(req.text + " " + C.render(req.calls))
    for values in P.VALUES.values():
        texts += values["train"] + values["heldout"]
    texts += list(FUNCTIONS) + list(PHENOMENA) + ["true", "false", "none"]
    return texts


def user_sets(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    """The llm domain: the user's evaluation and seed files, and a tokenizer from the seed set."""
    dc = cfg.domain
    metric = "json" if dc.metric == "json" else "exact"
    evals = llm_domain.read_examples(Path(dc.path) / dc.eval_file, metric, split="eval")
    seed = llm_domain.read_examples(Path(dc.path) / dc.seed_file, metric, split="seed")
    check_decontaminated(seed, evals, str(Path(dc.path) / dc.seed_file))
    seed = seed.drop(columns="split").assign(generation=layout.SEED, source="seed", parent_id=None, teacher="seed",
                                             judge="none")
    tokenizer = student.train_bpe_tokenizer(list(seed["request"]) + list(seed["label"]), dc.tokenizer_vocab)
    return evals, seed, tokenizer


def main(cfg: Config, _: str) -> None:
    pc = cfg.prepare
    rng = random.Random(stage.stage_seed(cfg.seed, layout.SEED, "prepare"))
    if cfg.domain.name == "toolcall":
        evals = eval_set(rng, pc)
        seed = seed_set(rng, pc, set(evals["request"]))
        plan = first_plan(rng, seed, pc.plan_rows)
        tokenizer = student.train_tokenizer(lexicon(rng))
    else:
        evals, seed, tokenizer = user_sets(cfg)
        plan = first_plan(rng, seed, pc.plan_rows, toolcall=False)
    model = student.build_model(tokenizer.get_vocab_size(), seed=stage.stage_seed(cfg.seed, layout.SEED, "model"),
                                **pc.model.model_dump())
    store.write_table(evals, layout.EVAL, store.EVALSET)
    store.write_table(seed, layout.path(layout.SEED, layout.TRAIN), store.TRAINSET)
    store.write_table(plan, layout.path(layout.SEED, layout.PLAN), store.PLAN)
    store.write_table(pd.DataFrame(columns=store.PROBE.names), layout.path(layout.SEED, layout.PROBE), store.PROBE)
    with store.atomic_file(layout.TOKENIZER) as tmp:
        tokenizer.save(str(tmp))
    with store.atomic_dir(layout.path(layout.SEED, layout.MODEL)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
    stage.log("prepare", f"eval {len(evals)} rows {evals['split'].value_counts().to_dict()}, seed {len(seed)} rows, "
              f"plan {len(plan)} rows, vocabulary {tokenizer.get_vocab_size()}, "
              f"student {sum(p.numel() for p in model.parameters()):,} parameters")


if __name__ == "__main__":
    stage.run("prepare", main, per_generation=False)
