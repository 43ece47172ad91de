"""docs/your-tools.md's worked example, measured: the shipped catalog read as a catalog of
your own, the shipped 300-request log (logs/traffic_sample.jsonl), the hand-written
requests as the labelled `user` file, and the test server as teacher and judge (it knows
the log's calls from bench/traffic_truth.jsonl, as bench/llm_server.py
`--truth` does). Three generations of 3,000 plan rows and 600 steps through the Prefect
flow (`flywheel run`) in a workspace copy of the checkout.

Writes experiments/worked_example.json (docs/your-tools.md's table is generated from it
by tools/docs.py). `python -m experiments.worked_example` (about 5 min).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT, commit, cpu_model

OUT = ROOT / "experiments" / "worked_example.json"
GENERATIONS = ("gen-000", "gen-001", "gen-002")


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from bench.llm_server import FakeLLM, toolcall_brain

    from bench.workspace import make_project, run
    from flywheel import layout, store, tables

    truth = {}
    for line in (ROOT / "bench" / "traffic_truth.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        truth[" ".join(rec["request"].split())] = json.dumps(rec["calls"])
    began = time.monotonic()
    with FakeLLM(toolcall_brain(truth, wrong_every=5)) as server, tempfile.TemporaryDirectory() as tmp:
        model = {"backend": "openai", "base_url": server.url, "concurrency": 8}
        project = make_project(Path(tmp) / "p", {
            "domain": {"toolcall": {"tools": "../../flywheel/toolcall/tools.json", "user_file": "user.jsonl"}},
            "traffic": {"file": "logs/traffic_sample.jsonl", "rows": 100},
            "generate": {"teacher": model | {"model": "teacher"}},
            "judge": {"committee": [model | {"model": "judge"}]},
            "prepare": {"plan_rows": 3000}, "expand": {"budget": 3000}, "train": {"steps": 600},
        })
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "init"], project)
        run([sys.executable, "-m", "flows.cli", "--project", str(project), "run"], project)
        vocab = json.loads((project / layout.path(layout.SEED, layout.MODEL) / "tokenizer.json").read_text())
        out = {"commit": commit(), "cpu": cpu_model(), "vocabulary": len(vocab["model"]["vocab"]), "generations": []}
        for gen in GENERATIONS:
            train = store.read_table(project / layout.path(gen, layout.TRAIN), tables.TRAINSET)
            report = store.read_json(project / layout.path(gen, layout.GENERATE_METRICS))
            profile = store.read_json(project / layout.path(gen, layout.FAILURE_PROFILE))
            row = {"generation": gen,
                   "user": store.read_json(project / layout.path(gen, layout.METRICS))["per_split"]["user"],
                   "rows": {k: int(v) for k, v in train["source"].value_counts().items()},
                   "traffic_labelled": report["sources"].get("traffic", 0),
                   "written": report["sources"].get("synthetic", 0),
                   "redacted": report["redacted"],
                   "traffic_dev_failure_rate": profile["sources"]["traffic"]["failure_rate"]}
            out["generations"].append(row)
            print(row, flush=True)
    out["wall_s"] = round(time.monotonic() - began)
    store.write_json(out, OUT)
    print(f"{OUT} ({out['wall_s']} s)")


if __name__ == "__main__":
    main()
