"""The benchmark runs (on toy sizes, into a temp directory) and measures what it claims:
the same work in the flow and in one process, no requests on a warm cache, the planted
duplicates and evaluation requests found at scale, a no-op DVC run that runs nothing.
Its timings mean nothing at this size and are not asserted."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import ROOT, run


@pytest.fixture(scope="module", autouse=True)
def _prefect(shared_prefect):
    yield


def test_bench_runs_on_a_tiny_size(tmp_path):
    out = tmp_path / "out"
    run([sys.executable, "-m", "bench", "--size", "tiny", "--out", str(out), "--docs", str(out / "benchmarks.md"),
         "--work", str(tmp_path)], ROOT)
    results = json.loads((out / "results.json").read_text())
    m = results["measurements"]
    assert set(m) == {"e2e", "overhead", "client", "scale", "dvc", "efficiency", "train", "train_hf"}
    assert results["machine"]["cores"] >= 1

    assert m["e2e"]["exit_code"] == 0 and set(m["e2e"]["accuracy"]) == {"gen-000"}
    assert m["e2e"]["peak_tree_rss_mib"] > m["e2e"]["peak_process_rss_mib"] > 0
    assert {"train@gen-000", "prepare"} <= set(m["e2e"]["stage_seconds"])
    # The flow and the plain loop did the same (seeded) work, or the ratio compares nothing.
    assert m["overhead"]["same_accuracy"], (m["e2e"]["accuracy"], m["overhead"]["direct"]["accuracy"])

    (client,) = m["client"]["runs"]
    assert client["errors"] == 0 and client["server_requests"] == client["prompts"]
    assert client["warm_requests"] == 0 and client["requests_per_s"] > 0

    for n in ("500", "1000"):
        planted = m["scale"]["ops"]["dedup"][n]["planted"]
        assert m["scale"]["ops"]["dedup"][n]["duplicates"] == planted["repeats"]
        assert m["scale"]["ops"]["gate"][n]["refused"]["eval_overlap"] == planted["eval_overlap"]
        assert m["scale"]["ops"]["decontamination"][n]["overlap"] == 0
        assert 240 < m["scale"]["ops"]["compose"][n]["train_rows"] < int(n) + 240  # the seed rows, plus new ones

    dvc = m["dvc"]
    assert dvc["lock_entries"] == dvc["stages"] == 8
    lr, log_every = dvc["after_train_key_change"]["train.lr"], dvc["after_train_key_change"]["train.log_every"]
    # A new learning rate changes the model, so everything downstream of train reruns;
    # a new log interval changes only the loss curve, and DVC stops there.
    assert lr["by_stage"]["train"] == 1 and lr["by_stage"]["evaluate"] == 1 and lr["by_stage"]["generate"] == 0
    assert log_every["stages_rerun"] == 1

    assert m["efficiency"]["arms"]["full"]["seeds"] >= 5  # read from docs/loop.json (make experiment)
    assert m["train"]["flywheel_tokens_per_s"] > 0 and m["train"]["bare_torch_tokens_per_s"] > 0
    limit = m["train"]["matmul_limit"]
    assert limit["openblas"]["tokens_per_s"] > 0 and limit["torch_mkl"]["tokens_per_s"] > 0
    assert 0 < m["train"]["share_of_matmul_limit"]  # the loop does more than the products: below 1 in practice
    assert m["train"]["kernels"]["MKL_CBWR"] == "COMPATIBLE"  # the bench measures on the stages' pin
    for mode in ("full", "lora"):
        assert m["train_hf"][mode]["trainer_tokens_per_s"] > 0 and m["train_hf"][mode]["bare_torch_tokens_per_s"] > 0
    assert m["train_hf"]["lora"]["trained"] < m["train_hf"]["full"]["trained"]

    table = (out / "benchmarks.md").read_text()
    for row in ("1. `flywheel run`", "2. orchestration overhead", "3. client", "4. compose", "5. no-op",
                "6. sample efficiency", "7. training throughput", "8. own-student training throughput"):
        assert row in table


def test_ablation_runs_its_arms_on_a_tiny_size(tmp_path):
    """Two arms of the lever ablation on toy sizes: the old and the copy tokenizer on the
    same teacher, every split scored. (The `old` arms read the old teacher from git
    history, which a shallow clone lacks.) The numbers mean nothing at this size."""
    out = tmp_path / "ablation.json"
    run([sys.executable, "-m", "experiments.ablation", "--rows", "200", "--steps", "3", "--seeds", "0",
         "--arms", "teacher,both", "--out", str(out)], ROOT)
    results = json.loads(out.read_text())["results"]
    assert [r["arm"] for r in results] == ["teacher", "both"]
    old, both = results
    assert old["rows"] == both["rows"] == 200 and old["steps"] == 3
    assert old["vocabulary"] > both["vocabulary"]  # every word of the lexicon, against frequent words + copy markers
    for r in results:
        assert {"user", "seen", "new_values", "new_phrasing"} <= set(r) and all(0 <= r[s] <= 1 for s in ("user", "seen"))


def test_ablation_refuses_an_unknown_arm(tmp_path):
    proc = run([sys.executable, "-m", "experiments.ablation", "--arms", "both,bigger", "--out", str(tmp_path / "a.json")],
               ROOT, check=False)
    assert proc.returncode != 0 and "unknown arm 'bigger'" in proc.stderr
