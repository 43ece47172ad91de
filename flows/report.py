"""What a run ends with: a table per generation, built from its results (results.py).

The columns follow the data: one per evaluation split the domain's evaluation set has
(`toolcall`: seen, new values, new phrasing; an `llm` task: its own splits), and the
judge's precision and recall only where the truth is known (the toolcall simulation).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from flows import results
from flywheel.config import PARAMS, load

JUDGE_COLUMNS = {"judge_precision": "judge P", "judge_recall": "judge R", "kept_label_accuracy": "kept ok"}


def row(r: results.Results, record: dict | None = None) -> dict:
    by_source = r.train["source"].value_counts().sort_index()
    out = {"generation": r.generation, "accuracy": r.metrics["accuracy"],
           **{f"split:{k}": v for k, v in r.metrics["per_split"].items()}}
    for key, name in (("judge_precision", "precision"), ("judge_recall", "recall"),
                      ("kept_label_accuracy", "kept_label_accuracy")):
        if name in r.judge:  # measured against the truth: only where the domain knows it
            out[key] = r.judge[name]
    out["rows"] = " ".join(f"{k}={v}" for k, v in by_source.items())
    out["factors"] = top_factors(r.profile.get("dev_factors", {}))
    if record is not None:
        out["champion"] = "not recorded" if record.get("version") is None else \
            f"v{record['version']} " + ("promoted" if record["promoted"] else "refused")
    return out


def top_factors(profile: dict, n: int = 3) -> str:
    """The `n` dev-split factors with the highest failure rate among those that stand out."""
    out = sorted(((v["failure_rate"], k, v) for k, v in profile.items() if v["stands_out"]), reverse=True)[:n]
    return ", ".join(f"{k} {v['failed']}/{v['rows']}" for _, k, v in out) or "none"


def columns(rows: list[dict]) -> dict[str, str]:
    """Column key -> header, in order, for the keys some row has."""
    present = [k for r in rows for k in r]
    heads = {"generation": "generation", "accuracy": "eval acc"}
    heads |= {k: k.removeprefix("split:").replace("_", " ") for k in dict.fromkeys(present) if k.startswith("split:")}
    heads |= {k: v for k, v in JUDGE_COLUMNS.items() if k in present}
    heads["rows"] = "train rows by source"
    heads["factors"] = "dev failures stand out"
    if "champion" in present:
        heads["champion"] = "champion"
    return heads


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value if value is not None else "")


def markdown(rows: list[dict]) -> str:
    """The full table, every column, as Markdown (`flywheel status`, the MLflow run)."""
    heads = columns(rows)
    lines = ["| " + " | ".join(heads.values()) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in heads) + " |" for r in rows]
    return "\n".join(lines)


NUMBERS = 9  # the compact table's most number columns (each about 9 characters wide)
DETAILS = {"rows": "train rows", "factors": "dev failures that stand out"}


def print_table(rows: list[dict], width: int | None = None) -> None:
    """What `flywheel run` ends with, readable in a terminal of 100 columns: the numbers
    per generation in one table, then each generation's training rows and standout
    failure factors as lines of their own (the full table: `markdown`)."""
    import textwrap

    heads = {k: v for k, v in columns(rows).items() if k not in DETAILS}
    numbers = [k for k in heads if k not in ("generation", "champion")][:NUMBERS]
    shown = ["generation", *numbers] + (["champion"] if "champion" in heads else [])
    console = Console(width=min(width or Console().width, 100), highlight=False)
    table = Table(title="Flywheel generations", title_justify="left", pad_edge=False, box=None)
    for key in shown:
        table.add_column(heads[key], justify="left" if key in ("generation", "champion") else "right",
                         overflow="fold", max_width=None if key == "champion" else 10,
                         min_width={"generation": 7, "champion": 12}.get(key))
    for r in rows:
        table.add_row(*[_cell(r.get(k, "")) for k in shown])
    console.print(table)
    for r in rows:
        for key, label in DETAILS.items():
            if r.get(key):
                console.print(textwrap.fill(f"{r['generation']} {label}: {r[key]}", width=console.width,
                                            subsequent_indent="    "))


def summary(root: Path = Path(".")) -> list[dict]:
    """The table's rows from the files of every generation made so far."""
    cfg = load(root / PARAMS)
    return [row(results.read(root, cfg, g)) for g in results.made(root, cfg)]


if __name__ == "__main__":
    print(markdown(summary()))
