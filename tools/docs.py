"""Tables in the docs that are generated from committed files, so they cannot go stale.

`python -m tools.docs` rewrites each block between `<!-- generated: NAME ... -->` and
`<!-- end generated: NAME -->` (flywheel/store.py `replace_block`); `python -m tools.docs
--check` only names the files that differ (exit status 1), and
`tests/test_docs_current.py` fails when one does. The blocks:

- README.md `results`: the committed reference run, from `data/<gen>/metrics.json` and
  `judge.json`, stamped with `data/reference.json` (the commit and CPU that made them);
- docs/architecture.md `layers`: which package imports which, from the import
  statements; `stages`: what each stage of `dvc.yaml` reads and writes; `modules`:
  every module of tasks/, flywheel/ and flows/ with its lines and its docstring's first
  sentence;
- docs/loop.md and docs/loop_default.md `loop`: the experiment's tables, from
  `docs/loop.json` and `docs/loop_default.json` (experiments/loop_report.py);
- docs/benchmarks.md `bench`: the benchmark tables, from `bench/results.json`
  (bench/report.py);
- docs/your-tools.md `worked_example`: the worked example, from
  `experiments/worked_example.json`; `your_tools`: the library-catalog run, from
  `experiments/your_tools.json`;
- docs/student.md `smollm2_speed`: SmolLM2's seconds per row, from
  `bench/smollm2_speed.json` (bench/smollm2_speed.py);
- docs/real-student.md `real_student`: the real-student profile's generations, from
  `experiments/real_student.json` (experiments/real_student.py);
- docs/testing.md `durations`: where the suite's time went, from `tests/durations.json`
  (written by `.ci/run`).

Everything else in those files is written by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import yaml

from flywheel.store import atomic_file, replace_block

ROOT = Path(__file__).resolve().parents[1]

REFERENCE = Path("data/reference.json")


def results(root: Path) -> str:
    """The reference run's table: accuracy per split, the judge, by generation."""
    from flywheel.config import load

    cfg = load(root / "params.yaml")
    ref = json.loads((root / REFERENCE).read_text())
    gens = [g for g in cfg.generations if (root / "data" / g / "metrics.json").exists()]
    metrics = {g: json.loads((root / "data" / g / "metrics.json").read_text()) for g in gens}
    judge = {g: json.loads((root / "data" / g / "judge.json").read_text()) for g in gens}
    splits = sorted({s for m in metrics.values() for s in m["per_split"]}, key=lambda s: (s == "user", s))
    head = ["generation", "eval accuracy", *(s.replace("_", " ") for s in splits), "judge precision", "judge recall",
            "kept labels right"]
    lines = [f"Made by `{ref['command']}` at commit {ref['commit']} on {ref['cpu']}, {ref['date']} "
             f"(`data/reference.json`).", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in gens:
        m, j = metrics[g], judge[g]
        cells = [g, f"{m['accuracy']:.3f}", *(f"{m['per_split'][s]:.3f}" if s in m["per_split"] else "–"
                                              for s in splits)]
        cells += [f"{j[k]:.3f}" if k in j else "–" for k in ("precision", "recall", "kept_label_accuracy")]
        lines.append("| " + " | ".join(cells) + " |")
    for check in ref.get("checked_on", []):
        lines += ["", f"Checked on {check['cpu']} at commit {check['commit']}: {check['equal']} of {check['outputs']} "
                  f"outputs had the same md5; the others differ by {check['differ']}."]
    clone = json.loads((root / "experiments" / "fresh_clone.json").read_text())[-1]
    lines += ["", f"A fresh clone's `make setup` and `make run` (`python -m experiments.fresh_clone`, commit "
              f"{clone['commit']}, {clone['cpu']}, pip cache {clone['cache']}): {clone['seconds']['total']:.0f} s in "
              f"all, {len(clone['differ_from_committed'])} of {clone['outputs']} outputs differing from the committed "
              "`dvc.lock`."]
    return "\n".join(lines)


PACKAGES = ("flows", "tasks", "flywheel", "bench", "experiments", "tools")


def layers(root: Path) -> str:
    """Which top-level package imports which (module level or inside a function), read
    from the code's import statements."""
    import ast

    uses: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                uses[package] |= {n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES} - {package}
    lines = ["| package | imports | imported by |", "|---|---|---|"]
    for package in PACKAGES:
        by = sorted(p for p in PACKAGES if package in uses[p])
        lines.append(f"| `{package}/` | {', '.join(f'`{u}`' for u in sorted(uses[package])) or '–'} | "
                     f"{', '.join(f'`{b}`' for b in by) or '–'} |")
    return "\n".join(lines)


MODULE_PACKAGES = ("tasks", "flywheel", "flows")


def _first_sentence(doc: str) -> str:
    import re

    text = " ".join(doc.split("\n\n")[0].split())
    end = re.search(r"[.?!](?= [A-Z`(])", text)
    return (text if end is None else text[: end.end()]).replace("|", "\\|")


def modules(root: Path) -> str:
    """Every module of the stages, the shared code and the flow: its lines and the first
    sentence of its docstring (what it is in the flywheel)."""
    import ast

    lines = ["| module | lines | what it is |", "|---|---:|---|"]
    total = 0
    for package in MODULE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            text = path.read_text(encoding="utf-8")
            count = len(text.splitlines())
            total += count
            doc = ast.get_docstring(ast.parse(text)) or ""
            lines.append(f"| `{path.relative_to(root).as_posix()}` | {count} | {_first_sentence(doc)} |")
    lines.append(f"| all | {total} | |")
    return "\n".join(lines)


def durations(root: Path) -> str:
    """docs/testing.md's table: where the suite's time went, from tests/durations.json
    (written by `.ci/run` through tests/conftest.py)."""
    d = json.loads((root / "tests" / "durations.json").read_text())
    lines = [f"Measured by `.ci/run` at commit {d['commit']} on {d['cpu']}: {d['tests']} tests on {d['workers']} "
             f"workers, {d['wall_s'] / 60:.1f} min of wall time for the suite ({d['serial_s'] / 60:.1f} min summed "
             "over the workers).", "", "| unit of work (a file, or the files that share a workspace) | seconds |",
             "|---|---:|"]
    lines += [f"| `{unit}` | {seconds:,.0f} |" for unit, seconds in d["units"].items()]
    return "\n".join(lines)


def _data(paths: list[str]) -> str:
    return ", ".join(f"`{p.replace('${key}', '<gen>').replace('${item.prev}', '<prev>')}`" for p in paths) or "–"


def stages(root: Path) -> str:
    """Per stage of dvc.yaml: its command, the data it reads, the params it declares, what it writes."""
    doc = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    lines = ["| stage | runs | reads (data) | params | writes |", "|---|---|---|---|---|"]
    for name, stage in doc.items():
        body = stage.get("do", stage)
        deps = [d for d in body.get("deps", []) if str(d).startswith("data/") or d == "logs"]  # logs: request logs
        outs = []
        for key in ("outs", "metrics", "plots"):
            outs += [next(iter(o)) if isinstance(o, dict) else o for o in body.get(key, [])]
        cmd = body["cmd"].replace("${key}", "<gen>")
        each = " (per generation)" if "foreach" in stage else " (once)"
        lines.append(f"| `{name}`{each} | `{cmd}` | {_data(deps)} | {', '.join(f'`{p}`' for p in body.get('params', []))}"
                     f" | {_data(outs)} |")
    return "\n".join(lines)


def _loop(stem: str) -> Callable[[Path], str]:
    def render(root: Path) -> str:
        from experiments.loop_report import markdown

        return markdown(json.loads((root / "docs" / f"{stem}.json").read_text()), stem)
    return render


def _bench(root: Path) -> str:
    from bench.report import tables

    return tables(json.loads((root / "bench" / "results.json").read_text()))


def _rows(counts: dict[str, int]) -> str:
    order = ("synthetic", "traffic", "corrected", "seed")
    return ", ".join(f"{k} {counts[k]:,}" for k in sorted(counts, key=lambda k: (order.index(k) if k in order else 9, k)))


def worked_example(root: Path) -> str:
    """docs/your-tools.md's worked example (experiments/worked_example.py), by generation."""
    run = json.loads((root / "experiments" / "worked_example.json").read_text())
    lines = [f"Made by `python -m experiments.worked_example` at commit {run['commit']} on {run['cpu']}, in "
             f"{run['wall_s'] / 60:.1f} min (`experiments/worked_example.json`); the student's vocabulary: "
             f"{run['vocabulary']} tokens.", "",
             "| generation | `user` | training rows by source (cumulative) | logged rows labelled | requests written "
             "| redacted (card, e-mail, IBAN, phone) | dev failure rate on traffic |", "|---|---|---|---|---|---|---|"]
    for g in run["generations"]:
        red = ", ".join(str(g["redacted"].get(k, 0)) for k in ("card", "email", "iban", "phone"))
        lines.append(f"| {g['generation']} | {g['user']:.3f} | {_rows(g['rows'])} | {g['traffic_labelled']} | "
                     f"{g['written']:,} | {red} | {g['traffic_dev_failure_rate']:.2f} |")
    return "\n".join(lines)


def your_tools(root: Path) -> str:
    """The library-catalog run of experiments/your_tools.py, by generation."""
    run = json.loads((root / "experiments" / "your_tools.json").read_text())
    lines = [f"Made by `python -m experiments.your_tools` at commit {run['commit']} on {run['cpu']}, in "
             f"{run['wall_s'] / 60:.1f} min (`experiments/your_tools.json`).", "",
             "| generation | held-out accuracy (`user`) | training rows (cumulative) | logged requests labelled | "
             "wrong labels among them | judge precision / recall on them | dev failure rate on traffic |",
             "|---|---|---|---|---|---|---|"]
    for g in run["generations"]:
        rows = _rows(g["rows"])
        judged = "–" if g["judge_precision"] is None else f"{g['judge_precision']:.2f} / {g['judge_recall']:.2f}"
        wrong = g["traffic_wrong_labels"] if g["traffic_labelled"] else "–"
        lines.append(f"| {g['generation']} | {g['held_out_accuracy']:.3f} | {rows} | {g['traffic_labelled']} | "
                     f"{wrong} | {judged} | {g['traffic_dev_failure_rate']:.3f} |")
    return "\n".join(lines)


def bfcl_acceptance(root: Path) -> str:
    """docs/bfcl.md: the catalog loader on BFCL's function docs, per category."""
    run = json.loads((root / "experiments" / "bfcl.json").read_text())
    lines = [f"Made by `python -m experiments.bfcl_agreement` at commit {run['commit']} on {run['cpu']}, bfcl-eval "
             f"{run['bfcl_eval']} (`experiments/bfcl.json`).", "",
             "| BFCL category | functions accepted | questions whose every function is accepted |", "|---|---|---|"]
    for cat, a in run["acceptance"].items():
        lines.append(f"| {cat} | {a['functions_accepted']:,} / {a['functions']:,} | {a['questions_readable']:,} / "
                     f"{a['questions']:,} ({100 * a['questions_readable'] / a['questions']:.1f}%) |")
    lines += ["", "| refused because | functions |", "|---|---|"]
    lines += [f"| {reason} | {n} |" for reason, n in run["refusals"].items()]
    return "\n".join(lines)


def bfcl_agreement(root: Path) -> str:
    """docs/bfcl.md: calls.accepts against BFCL's checker, per answer kind."""
    run = json.loads((root / "experiments" / "bfcl.json").read_text())
    lines = ["| answer kind | answers | BFCL accepts | the project accepts | agree (JSON) | agree (call text) |",
             "|---|---|---|---|---|---|"]
    for kind, k in run["agreement"].items():
        lines.append(f"| {kind.replace('_', ' ')} | {k['answers']:,} | {k['bfcl_accepts']:,} | {k['project_accepts']:,} | "
                     f"{k['agree_json']:,} | {k['agree_text']:,} |")
    kinds = sorted({d["kind"] for d in run["disagreements"]})
    lines += ["", f"Disagreements: {len(run['disagreements']):,}, all of kind {', '.join(kinds) or 'none'}; gold "
                  f"answers BFCL's own checker rejects: {len(run['gold_rejected_by_bfcl'])} "
                  f"({', '.join(g['id'] for g in run['gold_rejected_by_bfcl'])})."]
    return "\n".join(lines)


def bfcl_cost(root: Path) -> str:
    """docs/bfcl.md: what the suite costs (bench/bfcl_cost.py)."""
    c = json.loads((root / "bench" / "bfcl_cost.json").read_text())
    a = c["answer"]
    return "\n".join([
        f"Measured by `python -m bench.bfcl_cost` at commit {c['commit']} on {c['cpu']} (`bench/bfcl_cost.json`):", "",
        f"- importing BFCL's checker and tool conversion (`flywheel.bfcl._bfcl`, no provider SDK): "
        f"{1000 * c['import_s']:.0f} ms, median of 5 fresh processes;",
        f"- reading all {c['questions']:,} single-turn questions and loading their tools: {c['read_s']:.1f} s "
        f"({c['readable']:,} readable);",
        f"- BFCL's checker: {c['check_ms_per_question']:.2f} ms a question;",
        f"- answering: {a['student']}, {a['questions']} questions (the tests' sample) with their own turns and "
        f"tools: {a['seconds']:.1f} s."])


def smollm2_speed(root: Path) -> str:
    """docs/student.md: SmolLM2 per row, before and after the shared prefix (bench/smollm2_speed.py)."""
    c = json.loads((root / "bench" / "smollm2_speed.json").read_text())
    b, prev, pin, nat = c["before"], c.get("previous"), c["after"]["pinned"], c["after"].get("native")
    rows = [("greedy answers, untrained, 64 new tokens (s/row)", "answer_s_per_row"),
            ("the probe's loss pass (s/row)", "label_losses_s_per_row"),
            ("LoRA r 8 training (s/row)", "train_s_per_row"),
            ("after training: answers with the labels checked first (s/row)", "answer_with_labels_s_per_row"),
            ("after training: answers, max_new_tokens 0 (s/row)", "answer_auto_length_s_per_row"),
            ("training: share of the matmul limit", "train_share_of_matmul_limit"),
            ("LoRA r 8 training, prefix without gradients (s/row)", "train_no_prefix_grad_s_per_row"),
            ("training, prefix without gradients: share of the matmul limit",
             "train_no_prefix_grad_share_of_matmul_limit"),
            ("decoding: share of the matmul limit", "answer_share_of_matmul_limit"),
            ("peak memory (GiB)", "peak_rss_gib")]
    def cell(d: dict, key: str) -> str:
        return "" if d is None or key not in d else f"{d[key]:g}"
    out = [f"Measured by `python -m bench.smollm2_speed` on {c['cpu']}, {pin['rows']} rows of the shipped catalog "
           f"({pin['prompt_tokens']:g} prompt tokens a row, {pin['shared_prefix_tokens']} of them shared), "
           f"{pin['threads']} threads; before: commit {b['commit']}"
           + (f", then commit {prev['commit']}" if prev else "") + f", now: commit {c['commit']}. "
           f"The matmul limit is torch's `mm` at this model's shapes, timed in the same process "
           f"({pin['mm_gflop_per_s']:g} GFLOP/s pinned" + (f", {nat['mm_gflop_per_s']:g} native" if nat else "")
           + ").", "",
           "| per row | before (pinned) | " + (f"{prev['commit']} (pinned) | " if prev else "")
           + "now, pinned kernels | now, the machine's own |", "|---|---|---|---|" + ("---|" if prev else "")]
    out += [f"| {label} | {cell(b, key)} | " + (f"{cell(prev, key)} | " if prev else "")
            + f"{cell(pin, key)} | {cell(nat, key) if nat else 'not rerun'} |" for label, key in rows]
    out += ["", f"After training, {pin['rows_answered_from_labels']} of {pin['rows']} rows were answered from their "
            f"label without decoding (pinned); max_new_tokens 0 decoded up to {pin['max_new_tokens_auto']} tokens."]
    return "\n".join(out)


def real_student(root: Path) -> str:
    """docs/real-student.md: the real-student profile's generations (experiments/real_student.py)."""
    from experiments.real_student import report

    return report(root)


BLOCKS: dict[str, dict[str, Callable[[Path], str]]] = {
    "docs/student.md": {"smollm2_speed": smollm2_speed},
    "docs/real-student.md": {"real_student": real_student},
    "docs/bfcl.md": {"acceptance": bfcl_acceptance, "agreement": bfcl_agreement, "cost": bfcl_cost},
    "README.md": {"results": results},
    "docs/architecture.md": {"layers": layers, "stages": stages, "modules": modules},
    "docs/loop.md": {"loop": _loop("loop")},
    "docs/loop_default.md": {"loop": _loop("loop_default")},
    "docs/benchmarks.md": {"bench": _bench},
    "docs/your-tools.md": {"worked_example": worked_example, "your_tools": your_tools},
    "docs/testing.md": {"durations": durations},
}


def rendered(root: Path, name: str, text: str) -> str:
    """`text` (a file's contents) with each of its generated blocks rewritten."""
    for block, render in BLOCKS[name].items():
        text = replace_block(text, block, render(root), where=name)
    return text


def stale(root: Path = ROOT) -> list[str]:
    """The files whose generated blocks differ from what their committed sources give."""
    out = []
    for name in BLOCKS:
        text = (root / name).read_text(encoding="utf-8")
        if rendered(root, name, text) != text:
            out.append(name)
    return out


def write(root: Path = ROOT) -> list[str]:
    """Rewrite every generated block; returns the files that changed."""
    changed = []
    for name in BLOCKS:
        path = root / name
        old = path.read_text(encoding="utf-8")
        new = rendered(root, name, old)
        if new != old:
            with atomic_file(path) as tmp:
                tmp.write_text(new, encoding="utf-8")
            changed.append(name)
    return changed


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        bad = stale()
        for name in bad:
            print(f"{name}: a generated block differs from its sources; run `python -m tools.docs`", file=sys.stderr)
        return 1 if bad else 0
    if argv:
        print("usage: python -m tools.docs [--check]", file=sys.stderr)
        return 2
    for name in write():
        print(f"rewrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
