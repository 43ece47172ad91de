"""Stage `train`: continue the student from the previous generation's checkpoint on this
generation's training set.

Reads data/<prev>/model, data/<gen>/train.parquet, data/tokenizer.json; writes
data/<gen>/model (config.json + model.safetensors, via save_pretrained) and the loss
curve data/<gen>/train_loss.csv (a DVC plot). Seeded and single-process, so the
checkpoint is bit-identical on a rerun with the same thread count.
"""

from __future__ import annotations

import pandas as pd

from flywheel import domain, layout, stage, store, student
from flywheel.config import Config


def main(cfg: Config, generation: str) -> None:
    tc = cfg.train
    prev = cfg.generation(generation).prev
    student.set_threads(tc.threads)
    rows = store.read_table(layout.path(generation, layout.TRAIN), store.TRAINSET)
    if rows.empty:
        raise store.DataError(f"{layout.path(generation, layout.TRAIN)}: no training rows")
    codec = student.Codec(student.load_tokenizer(layout.TOKENIZER))
    model = student.load(layout.path(prev, layout.MODEL))
    pairs = [(codec.prompt(r), codec.target(domain.target(cfg.domain, label)))
             for r, label in zip(rows["request"], rows["label"])]
    too_long = [i for i, (p, t) in enumerate(pairs) if len(p) + len(t) > model.config.n_positions]
    if too_long:
        raise store.DataError(f"{layout.path(generation, layout.TRAIN)}: row {rows['id'].iloc[too_long[0]]} is "
                              f"longer than prepare.model.n_positions={model.config.n_positions} tokens")
    bar = stage.Progress("train", "steps", tc.steps)
    history = student.train(model, pairs, steps=tc.steps, batch_size=tc.batch_size, lr=tc.lr,
                            warmup_steps=tc.warmup_steps, weight_decay=tc.weight_decay,
                            seed=stage.stage_seed(cfg.seed, generation, "train"), pad=codec.pad,
                            on_step=lambda step, loss: bar.advance(1, f"loss {loss:.3f}"))
    seconds = bar.close()
    with store.atomic_dir(layout.path(generation, layout.MODEL)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
    curve = pd.DataFrame(history, columns=["step", "loss"])
    store.write_csv(curve[(curve["step"] % tc.log_every == 0) | (curve["step"] == tc.steps)],
                    layout.path(generation, layout.TRAIN_LOSS))
    tokens = sum(len(p) + len(t) for p, t in pairs) / len(pairs) * tc.batch_size * tc.steps
    stage.log("train", f"{tc.steps} steps on {len(rows)} rows in {seconds:.1f}s "
              f"({tokens / seconds:,.0f} tokens/s), final loss {history[-1][1]:.4f}")


if __name__ == "__main__":
    stage.run("train", main)
