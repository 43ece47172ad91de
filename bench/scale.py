"""Benchmark 4: the data stages at scale (100k, 1M, 2M generated rows).

A workspace is built per size: `data/gen-000/verdicts.parquet` with N judged rows (real
toolcall requests and labels from the generator, made distinct with a ticket number,
with 2% exact repeats and, for the gate only, planted evaluation requests), the default
seed and evaluation sets, and an empty probe. Each operation then runs in a fresh
process, so that its peak memory (ru_maxrss, the whole process, imports included) is its
own (VmHWM: getrusage's ru_maxrss would also count the parent's memory, which Linux
carries across fork and exec):

- `gate`: generate's validation gate (`flywheel.gate.Gate`) admitting every request;
- `dedup`: compose's duplicate check on normalized requests;
- `decontamination`: compose's check against the evaluation set;
- `compose`: the whole `compose` stage (`tasks.compose.main`), reading and writing Parquet.

Timings exclude interpreter start and imports; `gate`, `dedup` and `decontamination`
also exclude reading the input.

    python -m bench.scale OP N WORKSPACE     (one measurement, prints JSON; used by measure())
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from bench import ROOT

OPS = ("gate", "dedup", "decontamination", "compose")
BASE_ROWS = 20_000
REPEAT_SHARE = 0.02
PLANTED_EVAL = 100


def build(dest: Path, n: int) -> dict:
    """The workspace for n rows (skipped if it exists); returns what was planted."""
    import numpy as np
    import pandas as pd
    import yaml

    from flywheel import decontam, layout, store, tables
    from flywheel.config import load
    from flywheel.toolcall import calls
    from flywheel.toolcall import phrasings
    from flywheel.decontam import NearDuplicates
    from flywheel.toolcall import sets
    from flywheel.toolcall.phrasings import SKILLS

    planted = {"rows": n, "repeats": int(n * REPEAT_SHARE), "eval_overlap": PLANTED_EVAL}
    if (dest / "data" / "gen-000" / "verdicts.parquet").exists():
        return planted
    dest.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generations"] = {"gen-000": {"prev": "seed"}}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cfg = load(dest / "params.yaml")
    rng = random.Random(0)
    evals = sets.eval_set(rng, cfg.prepare.eval_rows, cfg.prepare.eval_mix)
    seed = sets.seed_set(rng, cfg.prepare.seed_rows, set(evals["request"]))
    reqs, seen, i = [], set(), 0
    near = NearDuplicates(list(evals["request"]))
    while len(reqs) < BASE_ROWS:  # distinct base requests: the only repeats are the planted ones
        req = phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)]))
        i += 1
        if decontam.request_key(req.text) not in seen and near.match(req.text) is None:
            seen.add(decontam.request_key(req.text))
            reqs.append(req)
    base = pd.DataFrame({"request": [r.text for r in reqs], "label": [calls.dumps(r.calls) for r in reqs],
                         "skills": [list(r.skills) for r in reqs]})
    idx = np.arange(n)
    src = np.random.default_rng(0)
    repeat_of = src.choice(n // 2, size=planted["repeats"], replace=False)  # later rows repeat earlier ones
    idx[n - planted["repeats"]:] = repeat_of
    rows = base.iloc[idx % BASE_ROWS].reset_index(drop=True)
    rows["request"] = rows["request"] + " (ticket " + pd.Series(idx // BASE_ROWS).astype(str) + ")"
    rows["id"] = [f"{i:016x}" for i in range(n)]
    rows = rows.assign(generation="gen-000", source="synthetic", parent_id=None, teacher="embedded", raw="",
                       error="", student_output="", verdict="correct", reason="", judge="embedded", agreement=None,
                       factors=[[] for _ in range(n)], kept=[[] for _ in range(n)], kind="random")
    rows["final_label"] = rows["label"]
    os.chdir(dest)
    store.write_table(rows, layout.path("gen-000", layout.VERDICTS), tables.VERDICTS)
    store.write_table(evals, layout.EVAL, tables.EVALSET)
    store.write_table(seed, layout.path(layout.SEED, layout.TRAIN), tables.TRAINSET)
    store.write_table(pd.DataFrame(columns=tables.PROBE.names), layout.path(layout.SEED, layout.PROBE), tables.PROBE)
    # The gate's input: the same requests with evaluation requests planted among them.
    gate_in = rows[["request"]].copy()
    gate_in.loc[src.choice(n, size=PLANTED_EVAL, replace=False), "request"] = \
        evals["request"].sample(PLANTED_EVAL, replace=True, random_state=0).to_numpy()
    gate_in.to_parquet(dest / "gate_requests.parquet")
    return planted


def peak_rss_mib() -> float:
    """This process's peak resident memory so far."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _one(op: str, dest: Path) -> dict:
    """Run one operation in this (fresh) process."""
    import pandas as pd

    from flywheel import decontam, layout, store, tables
    from flywheel.config import load
    from flywheel.gate import Gate
    from tasks import compose

    os.chdir(dest)
    cfg = load(Path("params.yaml"))
    imports_mib = peak_rss_mib()
    evals = store.read_table(layout.EVAL, tables.EVALSET)
    seed = store.read_table(layout.path(layout.SEED, layout.TRAIN), tables.TRAINSET)
    out: dict = {}
    if op == "gate":
        requests = pd.read_parquet("gate_requests.parquet")["request"].tolist()
        start = time.perf_counter()
        gate = Gate(set(evals["request"]), set(seed["request"]))
        admitted = sum(gate.admit(r) for r in requests)
        out |= {"admitted": admitted, "refused": gate.refused}
    elif op in ("dedup", "decontamination"):
        rows = pd.read_parquet(layout.path("gen-000", layout.VERDICTS), columns=["id", "request"])
        start = time.perf_counter()
        if op == "dedup":
            out["duplicates"] = int(decontam.duplicated_requests(rows["request"]).sum())
        else:
            decontam.check_decontaminated(rows, evals, "bench")
            out["overlap"] = 0
    else:
        start = time.perf_counter()
        compose.main(cfg, "gen-000")
        train = pd.read_parquet(layout.path("gen-000", layout.TRAIN), columns=["id"])
        out["train_rows"] = len(train)
    out["seconds"] = round(time.perf_counter() - start, 2)
    out["peak_rss_mib"] = round(peak_rss_mib())
    out["rss_after_imports_mib"] = round(imports_mib)
    return out


def measure(work: Path, sizes=(100_000, 1_000_000, 2_000_000), log=print) -> dict:
    results: dict = {"sizes": list(sizes), "ops": {op: {} for op in OPS},
                     "target": "1M rows: under 30 s and 2 GiB per operation; 2M costs at most 2.2x 1M"}
    for n in sizes:
        dest = work / f"scale-{n}"
        start = time.perf_counter()
        planted = build(dest, n)
        log(f"scale: {n:,} rows built in {time.perf_counter() - start:.0f}s")
        for op in OPS:
            proc = subprocess.run([sys.executable, "-m", "bench.scale", op, str(n), str(dest)], cwd=ROOT,
                                  capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"scale {op} {n}: {proc.stderr.strip().splitlines()[-1:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["planted"] = planted
            results["ops"][op][str(n)] = res
            log(f"scale: {op} on {n:,} rows: {res['seconds']}s, peak {res['peak_rss_mib']} MiB")
    for op, by_n in results["ops"].items():
        if "1000000" in by_n and "2000000" in by_n:
            by_n["growth_2m_over_1m"] = {
                "time": round(by_n["2000000"]["seconds"] / max(by_n["1000000"]["seconds"], 1e-9), 2),
                "memory": round(by_n["2000000"]["peak_rss_mib"] / by_n["1000000"]["peak_rss_mib"], 2)}
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    op, n, dest = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    print(json.dumps(_one(op, dest)))
