"""A table per generation from the metrics files the stages wrote: what a run ends with."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from flywheel import layout, store
from flywheel.config import PARAMS, load

HEADERS = {"generation": "generation", "accuracy": "eval acc", "seen": "seen", "new_values": "new values",
           "new_phrasing": "new phrasing", "judge_precision": "judge P", "judge_recall": "judge R",
           "kept_label_accuracy": "kept labels ok", "rows": "train rows by source", "champion": "champion"}


NAN = float("nan")


def summary(root: Path = Path(".")) -> list[dict]:
    rows = []
    for generation in load(root / PARAMS).generations:
        try:
            metrics = store.read_json(root / layout.path(generation, layout.METRICS))
            judge = store.read_json(root / layout.path(generation, layout.JUDGE_METRICS))
            train = store.read_table(root / layout.path(generation, layout.TRAIN), store.TRAINSET)
        except store.DataError:
            continue  # not made yet
        by_source = train["source"].value_counts().sort_index()
        rows.append({"generation": generation, "accuracy": metrics["accuracy"], **metrics["per_split"],
                     # measured against the truth: the toolcall simulation only
                     "judge_precision": judge.get("precision", NAN), "judge_recall": judge.get("recall", NAN),
                     "kept_label_accuracy": judge.get("kept_label_accuracy", NAN),
                     "rows": " ".join(f"{k}={v}" for k, v in by_source.items())})
    return rows


def print_table(root: Path = Path("."), records: dict | None = None) -> None:
    """`records`: per generation, what the flow recorded (model version, gate decision)."""
    table = Table(title="Flywheel generations")
    columns = [c for c in HEADERS if c != "champion" or records]
    for col in columns:
        table.add_column(HEADERS[col], justify="left" if col in ("generation", "rows", "champion") else "right",
                         no_wrap=True)
    for row in summary(root):
        if records and row["generation"] in records:
            r = records[row["generation"]]
            row["champion"] = f"v{r['version']} " + ("promoted" if r["promoted"] else "refused")
        table.add_row(*[f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns])
    Console(width=max(Console().width, 160)).print(table)


if __name__ == "__main__":
    print_table()
