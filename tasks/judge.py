"""Stage `judge`: a verdict for every candidate label of this generation.

The embedded judge runs the verifier cascade (schema, types and enums, grounding) and
compares each label with the current student, the previous generation's model. Reads
data/<gen>/generated.parquet, data/<prev>/model, data/tokenizer.json; writes
data/<gen>/verdicts.parquet and data/<gen>/judge.json. data/<gen>/truth.parquet is read
only after every verdict is final, to measure the judge's precision and recall.
"""

from __future__ import annotations

import pandas as pd

from flywheel import layout, stage, store, student
from flywheel.config import Config
from flywheel.toolcall import calls as C
from flywheel.toolcall import judge


def student_answers(model_dir, requests: list[str], batch_size: int) -> list[list[str]]:
    codec = student.Codec(student.load_tokenizer(layout.TOKENIZER))
    model = student.load(model_dir)
    bar = stage.Progress("judge", "student answers", len(requests))
    outs = student.answer(model, codec, requests, batch_size=batch_size, on_batch=bar.advance)
    bar.close()
    return outs


def judge_rows(rows: pd.DataFrame, outputs: list[list[str]] | None, *, use_repair: bool) -> pd.DataFrame:
    out = rows.copy()
    results = []
    for i, (request, label) in enumerate(zip(rows["request"], rows["label"])):
        answer = C.parse(outputs[i]) if outputs is not None else None
        results.append(judge.verdict(request, C.loads(label), answer, use_repair=use_repair))
    out["student_output"] = [" ".join(o) for o in outputs] if outputs is not None else ""
    out["verdict"] = [r.verdict for r in results]
    out["reason"] = [r.reason for r in results]
    out["final_label"] = [None if r.final_label is None else C.dumps(r.final_label) for r in results]
    out["judge"] = "embedded"
    return out


def main(cfg: Config, generation: str) -> None:
    jc = cfg.judge
    prev = cfg.generation(generation).prev
    rows = store.read_table(layout.path(generation, layout.GENERATED), store.GENERATED)
    outputs = None
    if jc.use_student:
        outputs = student_answers(layout.path(prev, layout.MODEL), list(rows["request"]), jc.batch_size)
    verdicts = judge_rows(rows, outputs, use_repair=jc.repair)
    # The truth is read here and only here, after the verdicts are fixed.
    truth = store.read_table(layout.path(generation, layout.TRUTH), store.TRUTH)
    quality = judge.quality(verdicts, truth)
    store.write_table(verdicts, layout.path(generation, layout.VERDICTS), store.VERDICTS)
    store.write_json(quality, layout.path(generation, layout.JUDGE_METRICS))
    stage.log("judge", f"{quality['verdicts']}; precision {quality['precision']:.3f} recall {quality['recall']:.3f}; "
              f"kept-label accuracy {quality['kept_label_accuracy']:.3f} (teacher {1 - quality['teacher_error_rate']:.3f})")


if __name__ == "__main__":
    stage.run("judge", main)
