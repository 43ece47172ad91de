"""The loop experiment's report: docs/loop.md (tables) and docs/loop.png (plot), from
docs/loop.json (experiments/loop.py). Mean with a 95% t-interval over seeds; differences from
`full` are paired by seed (same seed: same seed set, evaluation set and generation 0)."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.stats import detectable, interval, order, summary
from flywheel import store

DISCUSSION = "## What this says"  # loop.md from here on is written by hand after a run
MAIN = ("full", "static", "random", "oracle", "tags", "no_judge", "error_only", "replace")


def cell(values: list[float], signed: bool = False) -> str:
    if not values:
        return "–"
    mean, half = interval(values)
    sign = "+" if signed else ""
    return f"{mean:{sign}.3f} ± {half:.3f}" if half == half else f"{mean:{sign}.3f}"


def efficiency_cell(ratios: list[float | None]) -> str:
    got = [r for r in ratios if r is not None]
    if not ratios:
        return "–"
    if not got:
        return f"not reached (0 of {len(ratios)} seeds)"
    text = cell(got)
    return text if len(got) == len(ratios) else f"{text} ({len(got)} of {len(ratios)} seeds; others not reached)"


TITLE = "# The loop experiment: does the closed loop beat static data?"


def markdown(data: dict, stem: str = "loop") -> str:
    """The experiment's tables, from its JSON (the block flows/docs.py keeps current)."""
    if not data["runs"]:
        raise SystemExit(f"{stem}.json: no results yet; run `make experiment`")
    s = summary(data)
    meta = data["meta"]
    size = meta["size"]
    walls = meta.get("wall_seconds", [])
    commits: dict[str, set[str]] = {}
    for r in data["runs"].values():  # a run made before runs recorded their commit: the file's
        commits.setdefault(r.get("commit", meta.get("commit", "?")), set()).add(r["arm"])
    main = max(commits, key=lambda c: len(commits[c]))
    others = "; ".join(f"{', '.join(f'`{a}`' for a in sorted(arms, key=order(data)))}: {c}" for c, arms in commits.items()
                       if c != main)
    lines = [f"Made by `make experiment` (`python -m experiments.loop`) at commit {main}" + (f" ({others})" if others else "")
             + " on "
             f"{meta.get('cpu', '')} ({meta['machine']}), {meta['date']}: "
             f"up to {len(meta['seeds'])} seeds × {meta['generations']} generations (the table says how many each arm "
             f"ran), {size['expand']['budget']} generated "
             f"rows per generation for every arm, {size['train']['steps']} training steps per generation (one torch "
             f"thread, {meta['parallel']} jobs at once). Wall time {sum(walls) / 60:.0f} min over {len(walls)} "
             f"invocation(s); {meta['job_seconds'] / 60:.0f} min of job time.", "",
             "Accuracy of the last generation's student on the 322 hand-written `user` requests and on the "
             f"evaluation set ({size['prepare'].get('eval_rows', 600)} generator rows: seen, new values, new "
             "phrasings). Mean ± half-width of a 95% "
             "t-interval over seeds; Δ is the arm minus `full`, paired by seed. *Rows to static* is the generated "
             "rows an arm needs to reach the `static` arm's final `user` accuracy, as a share of static's rows "
             "(below 1: fewer rows). Kept-label accuracy and teacher labels right are the share of right labels "
             "among the rows the judge kept and among all the teacher's labels (the generator's truth, read only "
             "by the judge's report), averaged over generations; rows kept is the verified rows added in all "
             "generations (mean over seeds).", "",
             "| arm | seeds | generations | user | Δ user | eval | Δ eval | kept-label accuracy | Δ kept-label | "
             "teacher labels right | rows kept | rows to static |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm, e in s.items():
        lines.append(f"| `{arm}` | {len(e['seeds'])} | {e['generations']} | {cell(e['user'])} | {cell(e['d_user'], True)} | "
                     f"{cell(e['eval'])} | {cell(e['d_eval'], True)} | {cell(e['kept_label_accuracy'])} | "
                     f"{cell(e['d_kept_label_accuracy'], True)} | {cell(e['teacher_label_accuracy'])} | "
                     f"{statistics.fmean(e['kept_rows']):,.0f} | {efficiency_cell(e['rows_to_static'])} |")
    if "full" in s:
        lines += ["", "`full` against each arm, paired by seed (full − arm: above zero, the loop wins); *detectable* is "
                  "the smallest true difference these seeds would find 80% of the time (paired t-test at 5%):", "",
                  "| full − | seeds | user | detectable | eval | detectable |", "|---|---|---|---|---|---|"]
        for arm, e in s.items():
            if arm == "full" or not e["d_user"]:
                continue
            du, de = [-d for d in e["d_user"]], [-d for d in e["d_eval"]]
            lines.append(f"| `{arm}` | {len(du)} | {cell(du, True)} | {detectable(du):.3f} | {cell(de, True)} | "
                         f"{detectable(de):.3f} |")
    lines += ["", f"![accuracy against rows generated, mean over seeds; dashed: levers]({stem}.png)", "",
              "Per generation (mean over seeds, `user` accuracy):", "",
              "| arm | " + " | ".join(f"gen-{i:03d}" for i in range(meta["generations"])) + " |",
              "|---|" + "---|" * meta["generations"]]
    for arm, e in s.items():
        values = [f"{v:.3f}" for v in e["by_generation"]["user"]]
        lines.append(f"| `{arm}` | " + " | ".join(values + ["–"] * (meta["generations"] - len(values))) + " |")
    return "\n".join(lines)


def plot(data: dict, out: Path, stem: str = "loop") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for arm, e in summary(data).items():
        style = "-" if arm in MAIN else "--"
        for ax, key in zip(axes, ("user", "eval")):
            ax.plot(e["generated_rows"], e["by_generation"][key], style, marker="o", label=arm)
    for ax, key in zip(axes, ("user (hand-written)", "evaluation set (generator)")):
        ax.set_xlabel("rows generated (cumulative)")
        ax.set_ylabel(f"accuracy: {key}")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=110)
    plt.close(fig)


def write(data: dict, out: Path, stem: str = "loop") -> dict:
    """<stem>.png, and <stem>.md's generated block (tools/docs.py keeps it current), the
    hand-written rest kept; a new file gets the title, the block and an empty discussion."""
    md = out / f"{stem}.md"
    old = md.read_text() if md.exists() else \
        f"{TITLE}\n\n<!-- generated: loop -->\n<!-- end generated: loop -->\n\n{DISCUSSION}\n"
    text = store.replace_block(old, "loop", markdown(data, stem), where=str(md))
    plot(data, out, stem)
    with store.atomic_file(md) as tmp:
        tmp.write_text(text)
    return summary(data)
