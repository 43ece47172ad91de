"""The health of the loop, per generation: is the data still diverse, does it go where
the student fails, has a skill quietly regressed? Computed by the flow after each generation
(logged to MLflow with step = generation, alarms written into the generation's summary);
pure functions over the generation's results (results.py).

- diversity: distinct bigrams (unique / total, over a fixed-size sample of 200 rows,
  since the ratio falls as a set grows) and distinct labels (unique / rows) of the
  training set and of the generation's new rows;
- composition: real (seed) share, rows by source, labels corrected so far;
- allocation against need: each skill's share of the new rows against its share of the
  previous probe's failures, and their total-variation distance (0: exactly where needed);
- worst case: per skill, the lowest evaluation accuracy since it was first learned
  (`health.learned_at`), so a regression hidden by the average shows.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from flows.results import Results
from flywheel.config import HealthConfig


SAMPLE = 200  # rows per diversity measure: the ratio falls with size, so compare equal sizes


def distinct_bigrams(texts: pd.Series, sample: int = SAMPLE) -> float:
    """Unique / total word bigrams over a fixed-size sample (the same rows every time)."""
    texts = pd.Series(sorted(texts, key=lambda t: hashlib.sha256(t.encode()).hexdigest())[:sample], dtype=object)
    grams = [tuple(w[i: i + 2]) for w in texts.str.lower().str.split() for i in range(max(len(w) - 1, 0))]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def distinct_labels(labels: pd.Series) -> float:
    return round(labels.nunique() / len(labels), 4) if len(labels) else 0.0


def skill_shares(skills: pd.Series, weights: pd.Series | None = None) -> pd.Series:
    ex = pd.DataFrame({"skill": skills, "w": 1.0 if weights is None else weights.astype(float)}).explode("skill")
    total = ex.groupby("skill")["w"].sum()
    return total / total.sum() if total.sum() else total


def allocation(new_skills: pd.Series, prev_probe: pd.DataFrame) -> dict:
    """Share of new rows per skill against share of the previous probe's failures per skill."""
    failed = prev_probe[~prev_probe["correct"]] if len(prev_probe) else prev_probe
    if not len(failed) or not len(new_skills):
        return {}
    have, need = skill_shares(new_skills), skill_shares(failed["skills"])
    skills = sorted(set(have.index) | set(need.index))
    have, need = have.reindex(skills, fill_value=0.0), need.reindex(skills, fill_value=0.0)
    out = {f"allocation.{s}.new_share": round(float(have[s]), 4) for s in skills}
    out |= {f"allocation.{s}.failure_share": round(float(need[s]), 4) for s in skills}
    out["allocation.distance"] = round(float((have - need).abs().sum() / 2), 4)
    return out


def worst_case(history: list[dict], learned_at: float) -> dict[str, dict]:
    """Per skill across generations so far: best and worst accuracy since first learned."""
    out: dict[str, dict] = {}
    for metrics in history:
        for skill, acc in metrics["per_skill"].items():
            s = out.setdefault(skill, {"learned": False, "best": acc, "worst": None, "current": acc})
            s["current"] = acc
            if not s["learned"] and acc >= learned_at:
                s.update(learned=True, best=acc, worst=acc)
            elif s["learned"]:
                s["best"], s["worst"] = max(s["best"], acc), min(s["worst"], acc)
    return out


def loop_health(r: Results, hc: HealthConfig) -> dict:
    metrics = {
        "health.diversity.train.distinct_2": distinct_bigrams(r.train["request"]),
        "health.diversity.train.distinct_labels": distinct_labels(r.train["label"]),
        "health.diversity.new.distinct_2": distinct_bigrams(r.new["request"]),
        "health.diversity.new.distinct_labels": distinct_labels(r.new["label"]),
        "health.rows.real_share": round(float((r.train["source"] == "seed").mean()), 4),
        "health.rows.corrected_so_far": int((r.train["source"] == "corrected").sum()),
    }
    metrics |= {f"health.rows.{k}": int(v) for k, v in r.train["source"].value_counts().items()}
    metrics |= {f"health.{k}": v for k, v in allocation(r.new["skills"], r.prev_probe).items()}
    worst = worst_case(r.history, hc.learned_at)
    metrics |= {f"health.worst.{s}": v["worst"] for s, v in worst.items() if v["learned"]}
    found = alarms(distinct_bigrams(r.before["request"]), metrics["health.diversity.new.distinct_2"], worst, hc)
    return {"metrics": metrics, "alarms": found, "worst_case": worst}


def alarms(diversity_before: float, diversity_now: float, worst: dict[str, dict], hc) -> list[str]:
    """Diversity of new rows fell by more than `diversity_drop`; a learned skill fell more
    than `regression` below the best it has had."""
    out = []
    if diversity_before and diversity_now < diversity_before * (1 - hc.diversity_drop):
        out.append(f"diversity: distinct bigrams of new rows fell from {diversity_before:.3f} to {diversity_now:.3f}")
    for skill, v in sorted(worst.items()):
        if v["learned"] and v["best"] - v["current"] > hc.regression:
            out.append(f"regression: skill {skill} at {v['current']:.3f}, down from its best {v['best']:.3f}")
    return out
