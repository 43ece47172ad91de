"""Stage `train`: continue the student from the previous generation's checkpoint on this
generation's training set.

Reads data/<prev>/model, data/<gen>/train.parquet; writes data/<gen>/model (the
checkpoint, in its kind's layout: flywheel/student/'s interface) and the loss curve
data/<gen>/train_loss.csv (a DVC plot). Seeded and single-process, so the
checkpoint is bit-identical on a rerun with the same thread count.
"""

from __future__ import annotations

import pandas as pd

from flywheel import domain, layout, stage, store, tables
from flywheel.student import StudentError, with_contexts
from flywheel.student import load as load_student
from flywheel.config import ConfigView


def main(cfg: ConfigView, generation: str) -> None:
    tc = cfg.train
    prev = cfg.generation(generation).prev
    dom = domain.get(cfg.domain)
    rows = store.read_table(layout.path(generation, layout.TRAIN), tables.TRAINSET)
    if rows.empty:
        raise store.DataError(f"{layout.path(generation, layout.TRAIN)}: no training rows")
    seed = stage.stage_seed(cfg.seed, generation, "train")
    student = load_student(layout.path(prev, layout.MODEL), dom, trainable=True, seed=seed, threads=tc.threads)
    bar = stage.Progress("train", "steps", tc.steps)
    reached = [0]

    def progress(step: int, loss: float) -> None:
        bar.advance(step - reached[0], f"loss {loss:.3f}")
        reached[0] = step

    try:
        history = student.fit(list(rows["request"]), list(rows["label"]), train=tc, student=cfg.student, seed=seed,
                              progress=progress, **with_contexts(student, list(rows["request"]), rows["context"]))
    except StudentError as e:
        raise store.DataError(f"{layout.path(generation, layout.TRAIN)}: {e}") from None
    seconds = bar.close()
    with store.atomic_dir(layout.path(generation, layout.MODEL)) as tmp:
        student.save(tmp)
    store.write_csv(pd.DataFrame(history, columns=["step", "loss"]), layout.path(generation, layout.TRAIN_LOSS))
    stage.log("train", student.describe(len(rows), seconds))


if __name__ == "__main__":
    stage.run("train", main)
