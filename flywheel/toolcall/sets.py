"""The `toolcall` domain's fixed sets, drawn once by `prepare`: the evaluation set, the
seed set and the texts the student's tokenizer learns its vocabulary from.

The evaluation set mixes three kinds of generalisation (`prepare.eval_mix`): `seen`
(generator phrasings and values, new combinations), `new_values` (generator phrasings,
held-out cities and titles) and `new_phrasing` (phrasings never generated). The seed set
uses the `seed` phrasings and training values only, and never repeats an evaluation request.
"""

from __future__ import annotations

import random

import pandas as pd

from flywheel import layout, store
from flywheel.toolcall import calls as C
from flywheel.toolcall import phrasings as P
from flywheel.toolcall.catalog import FUNCTIONS, PHENOMENA, SKILLS

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


def eval_set(rng: random.Random, rows_total: int, mix: dict[str, float]) -> pd.DataFrame:
    rows = []
    for kind, share in sorted(mix.items()):
        sets, values = EVAL_KINDS[kind]
        for req in _draw(rng, round(rows_total * share), sets, values, {r["request"] for r in rows}):
            label = C.dumps(req.calls)
            rows.append({"id": store.row_id(req.text, label), "request": req.text, "label": label,
                         "skills": list(req.skills), "split": kind})
    return pd.DataFrame(rows)


def seed_set(rng: random.Random, n: int, eval_texts: set[str]) -> pd.DataFrame:
    rows = []
    for req in _draw(rng, n, ("seed",), "train", eval_texts):
        label = C.dumps(req.calls)
        rows.append({"id": store.row_id(req.text, label), "generation": layout.SEED, "source": "seed",
                     "parent_id": None, "skills": list(req.skills), "teacher": "seed", "request": req.text,
                     "label": label, "judge": "none"})
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
