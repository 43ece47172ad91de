"""`python -m bench` (or `make bench`): the flywheel's performance next to its baselines.

Runs the seven measurements of docs/benchmarks.md, one after another (never two at
once: on 2 cores, anything running beside a timing changes it), and writes
`bench/results.json` (every number, with the machine) and the table in
`docs/benchmarks.md`. `--size tiny` runs everything on toy sizes in a minute or two (the
smoke test does that, into a temp directory); its numbers mean nothing.

    python -m bench [--size full|tiny] [--only e2e,client,...] [--out DIR] [--docs FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import ROOT, cpu_model
from bench import report

MEASUREMENTS = ("e2e", "overhead", "client", "scale", "dvc", "efficiency", "train", "train_hf")

TINY_FLYWHEEL = {  # one small generation
    "generations": {"gen-000": {"prev": "seed"}},
    "prepare": {"seed_rows": 60, "eval_rows": 120, "plan_rows": 200,
                "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 128}},
    "train": {"steps": 10, "batch_size": 32, "warmup_steps": 2, "log_every": 5},
    "expand": {"budget": 200},
}
# The 10-generation DVC workspace: the default model and evaluation set, less data and
# fewer steps per generation (a no-op repro checks hashes; it does not train).
DVC_SIZE = {"prepare": {"plan_rows": 200}, "expand": {"budget": 200}, "train": {"steps": 20}}

SIZES = {
    "full": {"flywheel": {}, "client": {"rounds": 400, "concurrency": (4, 8, 32)},
             "scale": (100_000, 1_000_000, 2_000_000), "dvc": {"overrides": DVC_SIZE, "generations": 10},
             "train": {"steps": 60, "rounds": 3}, "train_hf": {"steps": 40, "rounds": 2}},
    "tiny": {"flywheel": TINY_FLYWHEEL, "client": {"rounds": 10, "concurrency": (4,)},
             "scale": (500, 1_000), "dvc": {"overrides": TINY_FLYWHEEL, "generations": 1},
             "train": {"steps": 2, "rounds": 1},
             "train_hf": {"steps": 2, "rounds": 1, "rows": 40, "width": 32, "layers": 1}},
}


def machine() -> dict:
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


def efficiency(path: Path) -> dict:
    """Benchmark 6, read from the loop experiment's results (`make experiment`): the rows
    each arm generates to reach the static arm's final `user` accuracy, over static's rows."""
    if not path.exists():
        return {"error": f"{path} not found: run `make experiment` first"}
    from bench.stats import summary

    data = json.loads(path.read_text())
    arms = {}
    for arm, e in summary(data).items():
        if arm == "static":
            continue
        ratios = e["rows_to_static"]
        arms[arm] = {"per_seed": dict(zip(e["seeds"], ratios)),
                     "ratio_mean": round(sum(ratios) / len(ratios), 3) if ratios and None not in ratios else None,
                     "reached_in_seeds": sum(r is not None for r in ratios), "seeds": len(ratios)}
    return {"source": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "experiment": data["meta"], "arms": arms, "target": "at most 0.6"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated: " + ",".join(MEASUREMENTS))
    ap.add_argument("--out", default=str(ROOT / "bench"), help="where results.json goes")
    ap.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="the markdown table")
    ap.add_argument("--work", default="", help="scratch directory (default: a temp directory)")
    args = ap.parse_args(argv)
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(only) - set(MEASUREMENTS))
    if unknown:
        print(f"error: --only: unknown measurement {unknown[0]!r} (known: {', '.join(MEASUREMENTS)})",
              file=sys.stderr)
        return 2
    size = SIZES[args.size]
    out = Path(args.out)
    results_file = out / "results.json"
    # A partial run (--only) updates its measurements and keeps the others.
    results = json.loads(results_file.read_text()) if results_file.exists() and args.size == "full" else {}
    results.setdefault("measurements", {})
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[bench {time.perf_counter() - started:6.0f}s] {msg}", flush=True)

    with tempfile.TemporaryDirectory(prefix="flywheel-bench-", dir=args.work or None) as tmp:
        work = Path(tmp)
        m = results["measurements"]
        from bench import client, pipeline, scale, train_speed

        if "e2e" in only or "overhead" in only:
            m["e2e"] = pipeline.e2e(work, size["flywheel"], log=log)
            if "overhead" in only:
                direct = pipeline.direct(work, size["flywheel"], log=log)
                m["overhead"] = pipeline.overhead(m["e2e"], direct) | {"direct": direct}
        if "client" in only:
            m["client"] = {"runs": []}
            for c in size["client"]["concurrency"]:
                m["client"]["runs"].append(client.measure(prompts=size["client"]["rounds"] * c, concurrency=c))
                log(f"client: concurrency {c}: {m['client']['runs'][-1]['share_of_limit']} of the limit")
        if "scale" in only:
            m["scale"] = scale.measure(work, sizes=size["scale"], log=log)
        if "dvc" in only:
            # tiny: the e2e workspace (one generation, just built) serves as it is
            built = work / "e2e" if args.size == "tiny" and "e2e" in only else None
            m["dvc"] = pipeline.dvc(work, size["dvc"]["overrides"], generations=size["dvc"]["generations"], log=log,
                                    built=built)
        if "efficiency" in only:
            m["efficiency"] = efficiency(ROOT / "docs" / "loop.json")
        if "train" in only:
            m["train"] = train_speed.measure(**size["train"])
            log(f"train: ratio {m['train']['ratio']}")
        if "train_hf" in only:
            m["train_hf"] = train_speed.measure_hf(**size["train_hf"])
            log(f"train_hf: ratio full {m['train_hf']['full']['ratio']}, lora {m['train_hf']['lora']['ratio']}")
    results["machine"] = machine()
    results["size"] = args.size
    if set(only) == set(MEASUREMENTS):
        results["date"] = dt.date.today().isoformat()
        results["seconds"] = round(time.perf_counter() - started)
        results["partial_reruns"] = []
    else:  # the header keeps the full run's date and duration, and says what was redone since
        results.setdefault("date", dt.date.today().isoformat())
        results.setdefault("seconds", round(time.perf_counter() - started))
        results.setdefault("partial_reruns", []).append({"date": dt.date.today().isoformat(), "only": only})
    out.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    report.write_markdown(results, Path(args.docs))
    log(f"wrote {results_file} and {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
