"""The flywheel on a catalog and a request log that are not the shipped ones:
the test-built library catalog (tests/catalogs.py), 1,200 logged requests, 200 labelled
held-out ones, 60 seed rows, with the test server as teacher (it writes requests and
labels the logged ones, a wrong value in every fourth label) and as judge. Three
generations through `dvc repro`, at a size between the tests' and `make run`'s.

Writes experiments/your_tools.json: rows per source per generation, the judge's precision and
recall on the logged requests (against the calls the test server knows), and the
student's accuracy on the held-out file. `python -m experiments.your_tools` (about 10 min).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT, commit, cpu_model

OUT = ROOT / "experiments" / "your_tools.json"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from catalogs import judge_on_traffic, library_brain, library_folder
    from bench.llm_server import FakeLLM

    from bench.workspace import generations, make_project, run
    from flywheel import layout, store, tables

    truth: dict = {}
    start = time.monotonic()
    with FakeLLM(library_brain(truth, wrong_every=4)) as server, tempfile.TemporaryDirectory() as tmp:
        model = {"backend": "openai", "base_url": server.url, "concurrency": 8}
        project = make_project(Path(tmp) / "p", {
            "generations": generations(3),
            "domain": {"path": "domains/library",
                       "toolcall": {"tools": "library.yaml", "user_file": "eval.jsonl", "seed_file": "seed.jsonl"}},
            "traffic": {"file": "logs/traffic.jsonl", "rows": 300, "slice": "time"},
            "prepare": {"plan_rows": 2000},
            "generate": {"teacher": model | {"model": "teacher"}},
            "judge": {"committee": [model | {"model": "judge"}]},
            "expand": {"budget": 2000},
            "train": {"steps": 600},
        }, git=False)
        truth.update(library_folder(project, logged=1200, held_out=200, seed=60))
        run([sys.executable, "-m", "dvc", "repro", "-q"], project)
        out = {"commit": commit(), "cpu": cpu_model(), "generations": []}
        for gen in ("gen-000", "gen-001", "gen-002"):
            train = store.read_table(project / layout.path(gen, layout.TRAIN), tables.TRAINSET)
            q = judge_on_traffic(store.read_table(project / layout.path(gen, layout.VERDICTS), tables.VERDICTS), truth)
            metrics = store.read_json(project / layout.path(gen, layout.METRICS))
            profile = store.read_json(project / layout.path(gen, layout.FAILURE_PROFILE))
            out["generations"].append({
                "generation": gen, "rows": dict(sorted(train["source"].value_counts().to_dict().items())),
                "traffic_labelled": q["rows"], "traffic_wrong_labels": q["wrong"],
                "judge_precision": q["precision"], "judge_recall": q["recall"],
                "held_out_accuracy": metrics["per_split"]["user"],
                "traffic_dev_failure_rate": profile.get("sources", {}).get("traffic", {}).get("failure_rate")})
        out["wall_s"] = round(time.monotonic() - start)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    for g in out["generations"]:
        print(g)
    print(f"{OUT} ({out['wall_s']} s)")


if __name__ == "__main__":
    main()
