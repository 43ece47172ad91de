"""A table per generation from the metrics files the stages wrote: what `make run` ends with."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from flywheel import layout, store
from flywheel.config import load


def summary() -> list[dict]:
    rows = []
    for generation in load().generations:
        try:
            metrics = store.read_json(layout.path(generation, layout.METRICS))
            judge = store.read_json(layout.path(generation, layout.JUDGE_METRICS))
            profile = store.read_json(layout.path(generation, layout.FAILURE_PROFILE))
        except store.DataError:
            continue  # not made yet
        rows.append({"generation": generation, "accuracy": metrics["accuracy"], **metrics["per_split"],
                     "judge_precision": judge["precision"], "judge_recall": judge["recall"],
                     "kept_label_accuracy": judge["kept_label_accuracy"],
                     "teacher_accuracy": 1 - judge["teacher_error_rate"], "train_rows": profile["rows"]})
    return rows


def main() -> None:
    table = Table(title="Flywheel generations")
    headers = {"generation": "generation", "accuracy": "eval acc", "seen": "seen", "new_values": "new values",
               "new_phrasing": "new phrasing", "judge_precision": "judge P", "judge_recall": "judge R",
               "teacher_accuracy": "teacher labels ok", "kept_label_accuracy": "kept labels ok",
               "train_rows": "train rows"}
    columns = list(headers)
    for col in columns:
        table.add_column(headers[col], justify="left" if col == "generation" else "right", no_wrap=True)
    for row in summary():
        table.add_row(*[f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns])
    Console(width=max(Console().width, 150)).print(table)


if __name__ == "__main__":
    main()
