"""Statistics the experiments and the benchmarks share: intervals, the power of a paired
test, and the per-arm summary of an experiment's results (experiments/loop.py's JSON),
which experiments/loop_report.py tabulates and `make bench` reads for sample efficiency."""

from __future__ import annotations

import math
import statistics


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a 95% t-interval (n-1 degrees of freedom); nan below 2 values."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def detectable(values: list[float], power: float = 0.8) -> float:
    """The smallest true mean difference a paired t-test at 5% (two-sided) would find with
    `power`, given the spread of `values` (paired differences): (t_0.975 + t_power) sd / sqrt(n)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return float("nan")
    t = stats.t.ppf(0.975, n - 1) + stats.t.ppf(power, n - 1)
    return float(t) * statistics.stdev(values) / math.sqrt(n)


def order(data: dict):
    """The arms in the order experiments/loop.py defines them (its `meta.arms`), others last."""
    arms = data["meta"].get("arms", [])
    return lambda arm: arms.index(arm) if arm in arms else len(arms)


def runs(data: dict, arm: str) -> dict[int, list[dict]]:
    return {r["seed"]: r["curve"] for r in data["runs"].values() if r["arm"] == arm}


def rows_to_reach(curve: list[dict], target: float, key: str) -> float | None:
    """Generated rows at which a curve first reaches `target` (linear between generations), or None."""
    prev_rows, prev_acc = 0, None
    for r in curve:
        rows, acc = r["generated_rows"], r[key]
        if acc >= target:
            if prev_acc is None or prev_acc >= target:
                return float(rows)
            return prev_rows + (rows - prev_rows) * (target - prev_acc) / (acc - prev_acc)
        prev_rows, prev_acc = rows, acc
    return None


def at(curves: dict[int, list[dict]], seed: int, n: int) -> dict | None:
    """Generation n-1 of a seed's curve (an arm run for fewer generations compares there)."""
    curve = curves.get(seed, [])
    return curve[n - 1] if len(curve) >= n else None


def summary(data: dict) -> dict:
    """Every number the tables show, per arm. Differences and rows-to-static compare an arm
    with `full` and `static` at the arm's own last generation."""
    arms = sorted(dict.fromkeys(r["arm"] for r in data["runs"].values()), key=order(data))
    full, static = runs(data, "full"), runs(data, "static")
    out = {}
    for arm in arms:
        curves = runs(data, arm)
        seeds = sorted(curves)
        n = min(len(c) for c in curves.values())
        last = {s: curves[s][n - 1] for s in seeds}
        kla = {s: statistics.fmean(r["kept_label_accuracy"] for r in curves[s][:n]) for s in seeds}
        entry = {"seeds": seeds, "generations": n, "user": [last[s]["user"] for s in seeds],
                 "eval": [last[s]["eval"] for s in seeds], "kept_label_accuracy": [kla[s] for s in seeds],
                 "teacher_label_accuracy": [statistics.fmean(r["teacher_label_accuracy"] for r in curves[s][:n])
                                            for s in seeds],
                 "kept_rows": [last[s]["kept_rows"] for s in seeds],
                 "d_user": [], "d_eval": [], "d_kept_label_accuracy": [], "rows_to_static": []}
        for s in seeds:
            ref = at(full, s, n)
            if arm != "full" and ref is not None:
                entry["d_user"].append(last[s]["user"] - ref["user"])
                entry["d_eval"].append(last[s]["eval"] - ref["eval"])
                entry["d_kept_label_accuracy"].append(
                    kla[s] - statistics.fmean(r["kept_label_accuracy"] for r in full[s][:n]))
            target = at(static, s, n)
            if target is not None and arm != "static":
                reached = rows_to_reach(curves[s][:n], target["user"], "user")
                entry["rows_to_static"].append(None if reached is None else reached / target["generated_rows"])
        entry["by_generation"] = {k: [statistics.fmean(curves[s][i][k] for s in seeds) for i in range(n)]
                                  for k in ("user", "eval")}
        entry["generated_rows"] = [statistics.fmean(curves[s][i]["generated_rows"] for s in seeds) for i in range(n)]
        out[arm] = entry
    return out
