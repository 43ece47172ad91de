"""Stage `probe`: where does this generation's student still fail on its own training pool?

Greedy answers and teacher-forced loss per row, and the failure profile: per skill, how
many rows the student gets wrong. Reads data/<gen>/model, data/<gen>/train.parquet,
data/tokenizer.json; writes data/<gen>/probe.parquet and data/<gen>/failure_profile.json.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel import layout, stage, store, student
from flywheel.config import Config
from flywheel.toolcall import calls as C
from flywheel.toolcall.catalog import SKILLS


def failure_profile(probe: pd.DataFrame) -> dict:
    exploded = probe[["skills", "correct"]].explode("skills")
    grouped = exploded.groupby("skills")["correct"]
    rows, failed = grouped.size(), grouped.apply(lambda s: int((~s).sum()))
    return {
        "rows": len(probe),
        "failed": int((~probe["correct"]).sum()),
        "skills": {s: {"rows": int(rows[s]), "failed": int(failed[s]),
                       "failure_rate": round(float(failed[s] / rows[s]), 4)} for s in SKILLS if s in rows.index},
    }


def main(cfg: Config, generation: str) -> None:
    pc = cfg.probe
    rows = store.read_table(layout.path(generation, layout.TRAIN), store.TRAINSET)
    codec = student.Codec(student.load_tokenizer(layout.TOKENIZER))
    model = student.load(layout.path(generation, layout.MODEL))
    bar = stage.Progress("probe", "training rows", len(rows))
    outputs = student.answer(model, codec, list(rows["request"]), batch_size=pc.batch_size, on_batch=bar.advance)
    bar.close()
    pairs = [(codec.prompt(r), codec.target(C.render(C.loads(l)))) for r, l in zip(rows["request"], rows["label"])]
    probe = C.score(rows, outputs)
    probe["skills"] = rows["skills"]
    # A diverged student has NaN losses: count those rows as infinitely hard, not as missing.
    probe["loss"] = np.nan_to_num(student.row_losses(model, pairs, pad=codec.pad, batch_size=pc.batch_size),
                                  nan=np.inf)
    profile = failure_profile(probe)
    store.write_table(probe, layout.path(generation, layout.PROBE), store.PROBE)
    store.write_json(profile, layout.path(generation, layout.FAILURE_PROFILE))
    stage.log("probe", f"{profile['failed']} of {profile['rows']} training rows failed")


if __name__ == "__main__":
    stage.run("probe", main)
