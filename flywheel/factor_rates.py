"""Failure rates by composition factor (`Domain.factors`), with a test that says which
stand out, and how well one split's factor failures predict another's.

`tasks/probe.py` profiles the dev split (generated rows held out of training) into
`failure_profile.json`, the file `expand` reads; `tasks/evaluate.py` profiles each
evaluation split, `user` included, into `factor_failures.json`, which nothing that
generates training data reads. `flows/lineage.py` logs both and their agreement.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def wilson(failed: int, rows: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a rate seen `failed` times in `rows`."""
    p, n = failed / rows, rows
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def factor_failure_rates(df: pd.DataFrame, *, min_rows: int = 20) -> dict:
    """Per factor of the rows' `factors` lists: rows, failures (`correct` false), the
    failure rate and its 95% Wilson interval. A factor `stands_out` when it was seen in
    at least `min_rows` rows and its interval lies wholly above the failure rate of all
    the rows."""
    overall = float((~df["correct"].astype(bool)).mean()) if len(df) else 0.0
    ex = df[["factors", "correct"]].explode("factors").dropna()
    out = {}
    for factor, part in ex.groupby("factors", sort=True):
        failed, rows = int((~part["correct"].astype(bool)).sum()), len(part)
        low, high = wilson(failed, rows)
        out[str(factor)] = {"rows": rows, "failed": failed, "failure_rate": round(failed / rows, 4),
                            "interval": [round(low, 4), round(high, 4)],
                            "stands_out": bool(rows >= min_rows and low > overall)}
    return out


def agreement(a: dict, b: dict, *, min_rows: int = 20) -> dict:
    """Pearson correlation of two factor profiles' failure rates, over the factors both
    saw in at least `min_rows` rows (`n`); None when fewer than three are shared or a
    side does not vary."""
    shared = sorted(f for f in a.keys() & b.keys() if a[f]["rows"] >= min_rows and b[f]["rows"] >= min_rows)
    x = np.array([a[f]["failure_rate"] for f in shared])
    y = np.array([b[f]["failure_rate"] for f in shared])
    r = float(np.corrcoef(x, y)[0, 1]) if len(shared) >= 3 and x.std() > 0 and y.std() > 0 else None
    return {"n": len(shared), "pearson": None if r is None else round(r, 4), "factors": shared}
