"""The expansion experiment: does aiming the data at failures beat spreading it evenly,
and does accumulating data beat replacing it?

Four arms on the default `toolcall` domain, each over `--generations` generations and
`--seeds` seeds, at equal budget per generation:
  error_driven + accumulate          (expand.strategy {error_driven: 1}, hardest failures first)
  random + accumulate                (expand.strategy {random: 1}, the baseline)
  error_driven + replace             (compose.policy replace)
  error_driven/spread + accumulate   (expand.failure_order spread: each skill combination in turn)
Every run is a real `dvc repro` of a fresh project copy. Generation 0 is the same for all
arms (its plan comes from the seed set); the strategies differ from generation 1 on.

Sample efficiency: the rows an error_driven arm adds (verified rows put into training,
summed over generations) until it reaches the accuracy random reaches with its full
budget, divided by random's full budget, interpolated linearly along the arm's curve.

    python -m bench.expansion [--seeds 3] [--generations 3] [--arms a,b] [--out docs]

`--arms` runs only those arms and keeps the other arms' results from <out>/expansion.json
(when it was made with the same seeds, generations and sizes).

writes <out>/expansion.json (every number), expansion.md (table) and expansion.png (plot).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


from bench import ROOT
from bench import workspace as W

ARMS = {
    "error_driven+accumulate": {"expand": {"strategy": {"error_driven": 1.0}}, "compose": {"policy": "accumulate"}},
    "random+accumulate": {"expand": {"strategy": {"random": 1.0}}, "compose": {"policy": "accumulate"}},
    "error_driven+replace": {"expand": {"strategy": {"error_driven": 1.0}}, "compose": {"policy": "replace"}},
    "error_driven/spread+accumulate": {"expand": {"strategy": {"error_driven": 1.0}, "failure_order": "spread"},
                                       "compose": {"policy": "accumulate"}},
}
DISCUSSION = "## What this says"  # expansion.md from here on is written by hand after a run
EFFICIENCY_ARMS = ("error_driven+accumulate", "error_driven/spread+accumulate")  # each against random+accumulate
# Smaller than the default run: 27 generations take about 40 min on 2 cores (75 min when shared).
SIZE = {"prepare": {"plan_rows": 600}, "expand": {"budget": 600}, "train": {"steps": 150}}


def kept(path: Path, arms: list[str], seeds: list[int], generations: int, size: dict) -> list[dict]:
    """The results of arms not being run, from an earlier run with the same design."""
    if arms == list(ARMS) or not path.exists():
        return []
    data = json.loads(path.read_text())
    meta = data["meta"]
    if meta["seeds"] != seeds or meta["size"] != size or meta.get("generations", 3) != generations:
        raise SystemExit(f"--arms: {path} was made with other seeds, sizes or generations; run every arm")
    return [r for r in data["results"] if r["arm"] not in arms]


def run_arm(arm: str, seed: int, generations: int, size: dict, work: Path) -> list[dict]:
    gens = W.generations(generations)
    params = W.merge(W.merge(size, ARMS[arm]), {"seed": seed, "generations": gens})
    params["publish"] = {"git_commit": False, "git_tag": False, "dvc_push": False}
    dest = W.make_project(work / f"{arm}-{seed}", params, git=False)
    proc = W.run([sys.executable, "-m", "dvc", "repro"], dest, check=False)
    if proc.returncode:
        raise SystemExit(f"{arm} seed {seed}: dvc repro failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    import pandas as pd

    out, added = [], 0
    for g in gens:
        metrics = json.loads((dest / "data" / g / "metrics.json").read_text())
        train = pd.read_parquet(dest / "data" / g / "train.parquet", columns=["generation"])
        added += int((train["generation"] == g).sum())
        profile = json.loads((dest / "data" / g / "failure_profile.json").read_text())
        out.append({"arm": arm, "seed": seed, "generation": g, "accuracy": metrics["accuracy"],
                    "per_split": metrics["per_split"], "added_rows": added, "train_rows": len(train),
                    "dev_failure_rate": profile["splits"].get("dev", {}).get("failure_rate")})
    shutil.rmtree(dest, ignore_errors=True)
    return out


def rows_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """Added rows at which a (rows, accuracy) curve first reaches `target` (linear), or None."""
    prev = (0, None)
    for rows, acc in curve:
        if acc >= target:
            if prev[1] is None or prev[1] >= target:
                return float(rows)
            return prev[0] + (rows - prev[0]) * (target - prev[1]) / (acc - prev[1])
        prev = (rows, acc)
    return None


def efficiency(results: list[dict]) -> list[dict]:
    out = []
    arms = [a for a in EFFICIENCY_ARMS if any(r["arm"] == a for r in results)]
    for arm in arms:
        for seed in sorted({r["seed"] for r in results}):
            curve = lambda a: [(r["added_rows"], r["accuracy"]) for r in results  # noqa: E731
                               if r["arm"] == a and r["seed"] == seed]
            rnd, err = curve("random+accumulate"), curve(arm)
            target, budget = rnd[-1][1], rnd[-1][0]
            need = rows_to_reach(err, target)
            out.append({"arm": arm, "seed": seed, "random_accuracy": target, "random_rows": budget,
                        "error_driven_rows": need, "ratio": None if need is None else round(need / budget, 3)})
    return out


def report(results: list[dict], eff: list[dict], out_dir: Path, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = sorted({r["generation"] for r in results})
    present = [a for a in ARMS if any(r["arm"] == a for r in results)]
    others = [a for a in present if a not in meta.get("arms_run", ARMS)]
    kept_note = (f" This command ran {', '.join(meta['arms_run'])}; the results of {', '.join(others)} are kept from "
                 "an earlier run of the same design (same seeds, generations and sizes).") if others else ""
    lines = ["# Expansion experiment", "",
             f"Measured {meta['date']} on {meta['machine']} by `{meta['command']}` "
             f"({meta['seconds'] / 60:.1f} min): {len(meta['seeds'])} seeds × {len(gens)} generations × "
             f"{len(present)} arms, "
             f"each generation planning {meta['size']['expand']['budget']} rows and training "
             f"{meta['size']['train']['steps']} steps. Accuracy is on the fixed held-out evaluation set (600 rows); "
             "mean ± standard deviation over seeds." + kept_note, "",
             "| arm | " + " | ".join(f"{g} accuracy" for g in gens) + " | added rows (last) | new phrasing (last) |",
             "|---|" + "---|" * (len(gens) + 2)]
    fig, ax = plt.subplots(figsize=(6, 4))
    for arm in present:
        cells, xs, ys, es = [], [], [], []
        for g in gens:
            accs = [r["accuracy"] for r in results if r["arm"] == arm and r["generation"] == g]
            rows = [r["added_rows"] for r in results if r["arm"] == arm and r["generation"] == g]
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            cells.append(f"{statistics.mean(accs):.3f} ± {sd:.3f}")
            xs.append(statistics.mean(rows))
            ys.append(statistics.mean(accs))
            es.append(sd)
        last = [r for r in results if r["arm"] == arm and r["generation"] == gens[-1]]
        phr = statistics.mean(r["per_split"].get("new_phrasing", 0) for r in last)
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {statistics.mean(r['added_rows'] for r in last):,.0f}"
                     f" | {phr:.3f} |")
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=arm)
    ax.set_xlabel("rows added to training (cumulative)")
    ax.set_ylabel("evaluation accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "expansion.png", dpi=120)
    lines += ["", "![accuracy against rows added](expansion.png)", "",
              "## Sample efficiency (error_driven against random, both accumulating)", "",
              "| arm | seed | random: accuracy with its full budget | random: rows added | error_driven: rows to reach it "
              "| ratio |", "|---|---|---|---|---|---|"]
    for e in eff:
        need = "not reached" if e["error_driven_rows"] is None else f"{e['error_driven_rows']:,.0f}"
        ratio = "> 1 (not reached)" if e["ratio"] is None else f"{e['ratio']:.3f}"
        lines.append(f"| {e['arm']} | {e['seed']} | {e['random_accuracy']:.3f} | {e['random_rows']:,} | {need} "
                     f"| {ratio} |")
    lines.append("")
    for arm in dict.fromkeys(e["arm"] for e in eff):
        ratios = [e["ratio"] for e in eff if e["arm"] == arm and e["ratio"] is not None]
        seeds = sum(1 for e in eff if e["arm"] == arm)
        summary = (f"mean ratio {statistics.mean(ratios):.3f} over the {len(ratios)} of {seeds} seeds that reached it"
                   if ratios else "did not reach random's accuracy in any seed")
        lines.append(f"**{arm}: {summary}.**  ")
    lines.append("")
    md = out_dir / "expansion.md"
    old = md.read_text() if md.exists() else ""
    discussion = old[old.index(DISCUSSION):] if DISCUSSION in old else ""  # written by hand; kept
    md.write_text("\n".join(lines) + "\n" + discussion)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to run (default: all)")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (tests)")
    args = ap.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"--arms: unknown arm {unknown[0]!r} (arms: {', '.join(ARMS)})")
    size = SIZE if not args.tiny else {
        "prepare": {"plan_rows": 60, "seed_rows": 40, "eval_rows": 60,
                    "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 128}},
        "expand": {"budget": 60}, "train": {"steps": 10, "batch_size": 16, "warmup_steps": 2}}
    seeds = [20261121 + i for i in range(args.seeds)]
    out = Path(args.out)
    results = kept(out / "expansion.json", arms, seeds, args.generations, size)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flywheel-expansion-") as work:
        for seed in seeds:
            for arm in arms:
                results += run_arm(arm, seed, args.generations, size, Path(work))
                print(f"{arm} seed {seed}: " + " ".join(f"{r['accuracy']:.3f}" for r in results[-args.generations:]),
                      flush=True)
    eff = efficiency(results)
    import platform

    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
            "command": "make experiment" if arms == list(ARMS) else f"python -m bench.expansion --arms {','.join(arms)}",
            "seconds": time.monotonic() - start, "seeds": seeds, "generations": args.generations, "size": size,
            "arms_run": arms}
    out.mkdir(parents=True, exist_ok=True)
    (out / "expansion.json").write_text(json.dumps({"meta": meta, "results": results, "efficiency": eff}, indent=1))
    report(results, eff, out, meta)
    print(json.dumps(eff, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
