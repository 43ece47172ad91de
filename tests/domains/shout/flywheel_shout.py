"""A third domain, to show that a domain is one module plus its templates: `shout`.

A request is `shout <words>`; the answer is the words in capitals. It has an embedded
teacher that makes a known share of mistakes (one word left in lower case) and a checker
that can verify every label exactly, so it runs through the whole DAG offline, with the
judge's precision and recall measured against the truth. Nothing outside this folder
knows it exists: `params.yaml` names it (`domain: {name: shout, path: <this folder>,
metric: exact}`) and flywheel/domain.py imports this file, which registers it.
"""

from __future__ import annotations

import random

import pandas as pd

from flywheel import layout, tables
from flywheel.domain import Domain, Prepared, register
from flywheel.tables import generated_row, truth_row
from flywheel.backends.committee import flag_quality
from flywheel.verdicts import LABEL_OK, LABEL_WRONG, TEACHER_ERROR, VERDICTS, WRONG
from flywheel.vocab import train_bpe_tokenizer

WORDS = {"train": "red green blue cat dog sun moon tree rock wind".split(),
         "heldout": "gold fox star lake hill rain".split()}
SKILLS = ("one_word", "many_words")
ERROR_RATE = 0.25


def _request(rng: random.Random, skill: str, split: str) -> tuple[str, str]:
    words = [rng.choice(WORDS[split]) for _ in range(1 if skill == "one_word" else rng.randint(2, 4))]
    return "shout " + " ".join(words), " ".join(w.upper() for w in words)


def _truth(request: str) -> str:
    return " ".join(w.upper() for w in request.split()[1:])


@register
class Shout(Domain):
    name = "shout"
    metrics = ("exact",)
    teacher_variables = frozenset({"request"})

    def prepare(self, rng, cfg, traffic_cfg) -> Prepared:
        def rows(n, split, exclude):
            out, seen = [], set(exclude)
            for i in range(20 * n):
                skill = SKILLS[i % 2]
                request, label = _request(rng, skill, split)
                if request not in seen:
                    seen.add(request)
                    out.append({"id": tables.row_id(request, label), "request": request, "label": label,
                                "skills": [skill], "split": "short" if skill == "one_word" else "long"})
                if len(out) == n:
                    break
            return pd.DataFrame(out)

        evals = rows(cfg.eval_rows, "heldout", set())
        seed = rows(cfg.seed_rows, "train", set(evals["request"])).drop(columns="split").assign(
            generation=layout.SEED, source="seed", parent_id=None, teacher="seed", judge="none")
        texts = [w for ws in WORDS.values() for w in ws] + [w.upper() for ws in WORDS.values() for w in ws] + ["shout"]
        return Prepared(evals, seed, train_bpe_tokenizer(texts, 300))

    def check_files(self, traffic_cfg) -> None:
        return None

    def label_format(self) -> str:
        return "exact"

    def generate(self, plan, pool, *, generation, gate, rng, teacher, cfg, rubric, bar=None):
        rows, truth = [], []
        for plan_row in plan.itertuples(index=False):
            skill = list(plan_row.skills)[0] if len(plan_row.skills) else SKILLS[0]
            request, label = _request(rng, skill, "train")
            if not gate.admit(request):
                continue
            wrong = rng.random() < ERROR_RATE
            candidate = label.lower() if wrong else label
            row = generated_row(generation, plan_row.parent_id, [skill], "embedded", request, candidate)
            rows.append(row)
            truth.append(truth_row(row["id"], label, "lower_case" if wrong else ""))
        return tables.frame(rows, tables.GENERATED), tables.frame(truth, tables.TRUTH)

    def target(self, label: str) -> str:
        return label

    def skills(self, seen=None) -> list[str]:
        extra = sorted({s for row in seen for s in row} - set(SKILLS)) if seen is not None else []
        return list(SKILLS) + extra

    def score(self, labels, outputs) -> list[bool]:
        return [o.strip() == label for o, label in zip(outputs, labels)]

    def deployed_answer(self, output: str) -> str:
        return output.strip()

    def functions(self, label: str) -> list[str]:
        return []

    def missing(self, output: str, label: str) -> list[str]:
        return ["many_words" if len(label.split()) > 1 else "one_word"]

    def random_spec(self, rng, skill):
        return [], [skill]

    def catalog(self) -> list:
        return []

    def canon(self, value):
        return " ".join(value.split()) or None if isinstance(value, str) else None

    def passes(self, label: str, request: str) -> bool:
        return label == _truth(request)

    def first_verdicts(self, rows, outputs, *, use_repair):
        out = rows.copy()
        ok = [not e and self.passes(label, r) for r, label, e in zip(rows["request"], rows["label"], rows["error"])]
        out["student_output"] = outputs if outputs is not None else ""
        out["verdict"] = [TEACHER_ERROR if e else (LABEL_OK if k else LABEL_WRONG) for e, k in zip(rows["error"], ok)]
        out["reason"] = ["" if k else "not in capitals" for k in ok]
        out["final_label"] = [label if k else (_truth(r) if use_repair else None)
                              for r, label, k in zip(rows["request"], rows["label"], ok)]
        out["judge"] = "embedded"
        out["agreement"] = None
        return out

    def undecided(self, verdicts):
        return pd.Series(False, index=verdicts.index)

    def judge_report(self, verdicts, truth):
        df = verdicts.merge(truth, on="id")
        quality = flag_quality(list(df["verdict"].isin(WRONG)), list(df["label"] != df["true_label"]))
        kept = df[df["final_label"].notna()]
        return quality | {"teacher_error_rate": float((df["label"] != df["true_label"]).mean()),
                          "kept_label_accuracy": float((kept["final_label"] == kept["true_label"]).mean()),
                          "verdicts": {v: int((verdicts["verdict"] == v).sum()) for v in VERDICTS}}
