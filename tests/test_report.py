"""What `flywheel run` ends with reads in a terminal of 100 columns: no column cut to an
ellipsis, no line wider than the terminal; the full table (every column) is Markdown,
for `flywheel status` and the MLflow run."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from flows import report

ROWS = [{"generation": f"gen-00{i}", "accuracy": 0.47 + i / 10, "split:new_phrasing": 0.394,
         "split:new_values": 0.562, "split:seen": 0.565, "split:user": 0.398 + i / 10, "judge_precision": 1.0,
         "judge_recall": 0.687, "kept_label_accuracy": 0.921, "rows": "corrected=312 seed=240 synthetic=10420",
         "factors": "date:numeric 30/40, dress:greeting 20/31, case:upper 12/22",
         "champion": "v12 promoted" if i else "not recorded"} for i in range(3)]


def printed(monkeypatch, width: int) -> str:
    out = io.StringIO()
    real = Console

    def console(*args, **kwargs):
        return real(*args, **{**kwargs, "file": out, "force_terminal": False})

    monkeypatch.setattr(report, "Console", console)
    report.print_table(ROWS, width=width)
    return out.getvalue()


@pytest.mark.parametrize("terminal", [100, 160])
def test_the_run_summary_fits_100_columns_without_cutting_a_column(monkeypatch, terminal):
    text = printed(monkeypatch, terminal)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "…" not in text
    for head in ("generation", "user", "seen", "judge P", "judge R", "champion"):
        assert head in text, head
    for r in ROWS:  # every number and the champion are whole
        row = next(line for line in lines if line.startswith(r["generation"] + " "))
        assert f"{r['split:user']:.3f}" in row and r["champion"] in row
        assert f"{r['generation']} train rows: {r['rows']}" in text


def test_the_full_table_has_every_column():
    table = report.markdown(ROWS)
    head = table.splitlines()[0]
    for name in report.columns(ROWS).values():
        assert f"| {name} |" in head or head.startswith(f"| {name} ")
    assert ROWS[2]["factors"] in table and len(table.splitlines()) == 2 + len(ROWS)
