"""Stage `probe`: where does this generation's student still fail on its own training pool?

Greedy answers and teacher-forced loss per row, and the failure profile: per skill, how
many rows the student gets wrong. Reads data/<gen>/model, data/<gen>/train.parquet,
data/tokenizer.json; writes data/<gen>/probe.parquet and data/<gen>/failure_profile.json.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel import domain, layout, stage, store, student
from flywheel.config import Config


def failure_profile(probe: pd.DataFrame, skills: list[str]) -> dict:
    exploded = probe[["skills", "correct"]].explode("skills")
    grouped = exploded.groupby("skills")["correct"]
    rows, failed = grouped.size(), grouped.apply(lambda s: int((~s).sum()))
    return {
        "rows": len(probe),
        "failed": int((~probe["correct"]).sum()),
        "skills": {s: {"rows": int(rows[s]), "failed": int(failed[s]),
                       "failure_rate": round(float(failed[s] / rows[s]), 4)} for s in skills if s in rows.index},
    }


def main(cfg: Config, generation: str) -> None:
    pc = cfg.probe
    rows = store.read_table(layout.path(generation, layout.TRAIN), store.TRAINSET)
    codec = student.Codec(student.load_tokenizer(layout.TOKENIZER))
    model = student.load(layout.path(generation, layout.MODEL))
    bar = stage.Progress("probe", "training rows", len(rows))
    outputs = domain.answers(cfg.domain, model, codec, list(rows["request"]), batch_size=pc.batch_size,
                             on_batch=bar.advance)
    bar.close()
    pairs = [(codec.prompt(r), codec.target(domain.target(cfg.domain, label)))
             for r, label in zip(rows["request"], rows["label"])]
    probe = domain.score(cfg.domain, rows, outputs)
    probe["skills"] = rows["skills"]
    # A diverged student has NaN losses: count those rows as infinitely hard, not as missing.
    probe["loss"] = np.nan_to_num(student.row_losses(model, pairs, pad=codec.pad, batch_size=pc.batch_size),
                                  nan=np.inf)
    profile = failure_profile(probe, domain.skills(cfg.domain, rows["skills"]))
    store.write_table(probe, layout.path(generation, layout.PROBE), store.PROBE)
    store.write_json(profile, layout.path(generation, layout.FAILURE_PROFILE))
    stage.log("probe", f"{profile['failed']} of {profile['rows']} training rows failed")


if __name__ == "__main__":
    stage.run("probe", main)
