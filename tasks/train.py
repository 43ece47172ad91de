"""Stage `train`: continue the student from the previous generation's checkpoint on this
generation's training set.

Reads data/<prev>/model, data/<gen>/train.parquet; writes data/<gen>/model (config,
safetensors weights and the tokenizer, in transformers' layout) and the loss curve
data/<gen>/train_loss.csv (a DVC plot). Seeded and single-process, so the
checkpoint is bit-identical on a rerun with the same thread count.
"""

from __future__ import annotations

import pandas as pd
import torch

from flywheel import domain, hf_student, layout, stage, store
from flywheel.config import ConfigView
from flywheel.student import Student, set_threads, train


def main(cfg: ConfigView, generation: str) -> None:
    tc = cfg.train
    prev = cfg.generation(generation).prev
    dom = domain.get(cfg.domain)
    rows = store.read_table(layout.path(generation, layout.TRAIN), store.TRAINSET)
    if rows.empty:
        raise store.DataError(f"{layout.path(generation, layout.TRAIN)}: no training rows")
    if hf_student.is_hf(layout.path(prev, layout.MODEL)):
        return train_hf(cfg, generation, prev, dom, rows)
    set_threads(tc.threads)
    student = Student.load(layout.path(prev, layout.MODEL))
    model = student.model
    pairs = student.pairs(list(rows["request"]), [dom.target(label) for label in rows["label"]])
    too_long = [i for i, (p, t) in enumerate(pairs) if len(p) + len(t) > model.config.n_positions]
    if too_long:
        raise store.DataError(f"{layout.path(generation, layout.TRAIN)}: row {rows['id'].iloc[too_long[0]]} is "
                              f"longer than prepare.model.n_positions={model.config.n_positions} tokens")
    bar = stage.Progress("train", "steps", tc.steps)
    history = train(model, pairs, steps=tc.steps, batch_size=tc.batch_size, lr=tc.lr, warmup_steps=tc.warmup_steps,
                    weight_decay=tc.weight_decay, seed=stage.stage_seed(cfg.seed, generation, "train"),
                    pad=student.codec.pad, on_step=lambda step, loss: bar.advance(1, f"loss {loss:.3f}"))
    seconds = bar.close()
    with store.atomic_dir(layout.path(generation, layout.MODEL)) as tmp:
        student.save(tmp)
    curve = pd.DataFrame(history, columns=["step", "loss"])
    store.write_csv(curve[(curve["step"] % tc.log_every == 0) | (curve["step"] == tc.steps)],
                    layout.path(generation, layout.TRAIN_LOSS))
    tokens = sum(len(p) + len(t) for p, t in pairs) / len(pairs) * tc.batch_size * tc.steps
    stage.log("train", f"{tc.steps} steps on {len(rows)} rows in {seconds:.1f}s "
              f"({tokens / seconds:,.0f} tokens/s), final loss {history[-1][1]:.4f}")


def train_hf(cfg: ConfigView, generation: str, prev: str, dom, rows: pd.DataFrame) -> None:
    """A Hugging Face student: transformers' Trainer (with peft under LoRA), continuing
    from the previous checkpoint (the base model itself for generation 0)."""
    import transformers  # only here: the built-in student does not need it (flywheel/gpt2.py)

    tc = cfg.train
    seed = stage.stage_seed(cfg.seed, generation, "train")
    # Its layers' products run in torch (MKL, vendor-neutral under the pin: flywheel/kernels.py),
    # whose bytes are the same for 1 to 3 threads.
    torch.set_num_threads(tc.threads)
    torch.use_deterministic_algorithms(True)
    transformers.set_seed(seed)  # a new LoRA adapter's initial weights are drawn here, before Trainer seeds
    student = hf_student.HFStudent.load(layout.path(prev, layout.MODEL), dom, trainable=True, lora_cfg=cfg.student)
    bar = stage.Progress("train", "steps", tc.steps)
    last = [0]

    def logged(step: int, loss: float) -> None:
        bar.advance(step - last[0], f"loss {loss:.3f}")
        last[0] = step

    try:
        history = student.fit(list(rows["request"]), list(rows["label"]), train=tc, student=cfg.student,
                              seed=seed, on_log=logged)
    except hf_student.StudentError as e:
        raise store.DataError(f"{layout.path(generation, layout.TRAIN)}: {e}") from None
    seconds = bar.close()
    with store.atomic_dir(layout.path(generation, layout.MODEL)) as tmp:
        student.save(tmp)
    store.write_csv(pd.DataFrame(history, columns=["step", "loss"]), layout.path(generation, layout.TRAIN_LOSS))
    trained = sum(p.numel() for p in student.model.parameters() if p.requires_grad)
    stage.log("train", f"{tc.steps} steps on {len(rows)} rows in {seconds:.1f}s, {trained:,} of "
              f"{student.parameters:,} parameters trained, final loss {history[-1][1] if history else float('nan'):.4f}")


if __name__ == "__main__":
    stage.run("train", main)
