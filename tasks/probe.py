"""Stage `probe`: where does this generation's student still fail?

The student answers (greedy) every row of the dev split that `compose` held out of
training (generated rows, never evaluation rows) and of its training pool, or of a
seeded sample of `probe.train_rows` pool rows (the pool grows every generation under
`accumulate`; decoding all of it was the probe's cost). A pool row outside the sample
has no probe row: `compose` keeps it (it is not known to be mastered), and `expand`
does not aim at it. Per row: right or
not, the loss and perplexity of the label (teacher-forced), and a category: `failed`;
`borderline` (right, but with a perplexity above the `borderline_quantile` of the right
answers: right but unsure); `mastered`. With `probe.samples`, the student also answers every row that many times
by sampling; `success_rate` is the share of its answers (greedy and sampled) that are
right, what `expand.targets: learnable` reads. For `toolcall`, a wrong answer's `missing` skills
are named from how it differs from the label. The failure profile counts, per split and
per skill, rows, failures, borderline rows and the skills missing in failed answers; and,
on the dev split, per composition factor (`Domain.factors`: for `toolcall` the notation
of each value, the request's dress, case and length) the failure rate with its 95%
Wilson interval, and whether it stands out (the interval wholly above the dev split's
rate).

Reads data/<gen>/model, data/<gen>/train.parquet, data/<gen>/dev.parquet; writes data/<gen>/probe.parquet and data/<gen>/failure_profile.json.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel import domain, layout, stage, store, tables
from flywheel.config import ConfigView
from flywheel.tables import BORDERLINE, FAILED, MASTERED
from flywheel.factor_rates import factor_failure_rates
from flywheel.student import student_answers, with_contexts



def categorize(correct: pd.Series, perplexity: pd.Series, quantile: float) -> pd.Series:
    right = perplexity[correct]
    cut = float(np.quantile(right[np.isfinite(right)], quantile)) if np.isfinite(right).any() else np.inf
    out = pd.Series(MASTERED, index=correct.index)
    out[correct & (perplexity > cut)] = BORDERLINE
    out[~correct] = FAILED
    return out


def failure_profile(probe: pd.DataFrame, skills: list[str]) -> dict:
    def per_skill(df: pd.DataFrame) -> dict:
        ex = df[["skills", "correct", "category"]].explode("skills")
        out = {}
        for s in skills:
            part = ex[ex["skills"] == s]
            if len(part):
                failed = int((~part["correct"]).sum())
                out[s] = {"rows": len(part), "failed": failed, "failure_rate": round(failed / len(part), 4),
                          "borderline": int((part["category"] == BORDERLINE).sum())}
        return out

    missing = probe.loc[~probe["correct"], "missing"].explode().dropna().value_counts()
    learnable = (probe["success_rate"] > 0) & (probe["success_rate"] < 1)
    return {
        "rows": len(probe),
        "learnable": int(learnable.sum()) if (probe["samples"] > 0).any() else None,
        "failed": int((~probe["correct"]).sum()),
        "categories": {c: int((probe["category"] == c).sum()) for c in (MASTERED, BORDERLINE, FAILED)},
        "splits": {split: {"rows": len(df), "failure_rate": round(float((~df["correct"]).mean()), 4)}
                   for split, df in probe.groupby("split")},
        "skills": per_skill(probe),
        "dev_skills": per_skill(probe[probe["split"] == "dev"]),
        "missing_skills": {k: int(v) for k, v in missing.sort_index().items()},
        # held-out rows only: a training row's failure is as much its label's noise as the student's
        "dev_factors": factor_failure_rates(probe[probe["split"] == "dev"]),
    }


def main(cfg: ConfigView, generation: str) -> None:
    pc = cfg.probe
    dom = domain.get(cfg.domain)
    train = store.read_table(layout.path(generation, layout.TRAIN), tables.TRAINSET)
    if pc.train_rows and len(train) > pc.train_rows:  # the pool grows; a sample measures it as well
        train = train.sample(n=pc.train_rows, random_state=stage.stage_seed(cfg.seed, generation, "probe") % 2**32)
        train = train.sort_index()
    dev = store.read_table(layout.path(generation, layout.DEV), tables.TRAINSET)
    rows = pd.concat([train.assign(split="train"), dev.assign(split="dev")], ignore_index=True)
    requests, labels = list(rows["request"]), list(rows["label"])
    contexts = list(rows["context"])
    student, outputs = student_answers("probe", layout.path(generation, layout.MODEL), requests, dom=dom,
                                       batch_size=pc.batch_size, contexts=contexts, expected=labels)
    own = with_contexts(student, requests, contexts)
    probe = pd.DataFrame({"id": rows["id"].to_numpy(), "output": outputs,
                          "correct": domain.score_rows(dom, labels, outputs, contexts)})
    right = probe["correct"].astype(int).to_numpy()
    if pc.samples:
        bar = stage.Progress("probe", f"sampled answers (temperature {pc.temperature})", len(requests) * pc.samples)
        for k in range(pc.samples):
            sampled = student.answer(requests, batch_size=pc.batch_size, temperature=pc.temperature,
                                     seed=stage.stage_seed(cfg.seed, generation, f"probe-sample-{k}"),
                                     on_batch=bar.advance, **own)
            right = right + np.array(domain.score_rows(dom, labels, sampled, contexts), dtype=int)
        bar.close()
    probe["samples"] = pc.samples
    probe["success_rate"] = right / (1 + pc.samples)  # the greedy answer and the samples
    probe["skills"], probe["split"] = rows["skills"], rows["split"]
    # A diverged student has NaN losses: count those rows as infinitely hard, not as missing.
    probe["loss"] = np.nan_to_num(student.label_losses(requests, labels, batch_size=pc.batch_size, **own), nan=np.inf)
    probe["perplexity"] = np.exp(np.minimum(probe["loss"], 700.0))
    probe["category"] = categorize(probe["correct"], probe["perplexity"], pc.borderline_quantile)
    probe["missing"] = [dom.missing(o, label) if not ok else []
                        for o, label, ok in zip(outputs, labels, probe["correct"])]
    probe["factors"] = [dom.factors(r, label) for r, label in zip(requests, labels)]
    profile = failure_profile(probe, dom.skills(rows["skills"]))
    if (rows["source"] == tables.TRAFFIC).any():  # the student on the requests people sent, and on the rest
        profile["sources"] = {src: {"rows": int(len(part)), "failure_rate": round(float((~part).mean()), 4)}
                              for src, part in probe["correct"].groupby(rows["source"].to_numpy())}
    store.write_table(probe, layout.path(generation, layout.PROBE), tables.PROBE)
    store.write_json(profile, layout.path(generation, layout.FAILURE_PROFILE))
    stage.log("probe", f"{profile['failed']} of {profile['rows']} rows failed {profile['splits']}; "
              f"{profile['categories']}; missing {profile['missing_skills']}; dev factors that stand out: "
              + (", ".join(f"{k} {v['failure_rate']:.2f} ({v['failed']}/{v['rows']})"
                           for k, v in profile["dev_factors"].items() if v["stands_out"]) or "none"))


if __name__ == "__main__":
    stage.run("probe", main)
