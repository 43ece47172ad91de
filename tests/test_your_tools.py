"""The flywheel on a user's own tools and traffic: a catalog from another field
built here (tests/catalogs.py), a file of logged requests with people's data in it, a
hand-labelled held-out file, and the local test server as teacher (writing requests and
labelling the logged ones) and judge; two generations through the Prefect flow with DVC
and MLflow. Then: rows per source, the judge on the traffic it verified, accuracy on the
held-out file, the traffic never in evaluation, no canary anywhere but data/, and a log
that grows rerunning only the generation whose slice it changes."""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import sys
from pathlib import Path

import pytest

from catalogs import CANARIES, judge_on_traffic, library_brain, library_folder, library_traffic
from conftest import SMALL, make_project, merge, run
from flywheel import decontam, layout, store, tables
from flywheel.decontam import NearDuplicates
from bench.llm_server import FakeLLM

GENERATIONS = ("gen-000", "gen-001")
TRAFFIC_ROWS = 120


def library_workspace(dest: Path, url: str, *, redact: bool = True) -> tuple[Path, dict]:
    """A project whose domain folder holds the library catalog, 300 logged requests, a
    held-out file of 60 labelled ones and 30 seed rows (catalogs.library_folder); returns
    it and the truth."""
    model = {"backend": "openai", "base_url": url, "concurrency": 4}
    params = merge(SMALL, {
        "domain": {"path": "domains/library",
                   "toolcall": {"tools": "library.yaml", "user_file": "eval.jsonl", "seed_file": "seed.jsonl"}},
        "traffic": {"file": "logs/traffic.jsonl", "rows": TRAFFIC_ROWS, "slice": "time", "redact": {"default": redact}},
        "prepare": {"plan_rows": 120},
        "generate": {"teacher": model | {"model": "teacher"}},
        "judge": {"committee": [model | {"model": "judge"}]},
        "expand": {"budget": 120},
    })
    project = make_project(dest, params)
    truth = library_folder(project, redact=redact)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "init"], project)
    return project, truth


@pytest.fixture(scope="module")
def own_run(harness, tmp_path_factory):
    from flows.flywheel import flywheel

    truth: dict = {}
    with FakeLLM(library_brain(truth, wrong_every=4)) as server:
        project, known = library_workspace(tmp_path_factory.mktemp("your-tools"), server.url)
        truth.update(known)
        results = flywheel(project=str(project))
        yield project, results, server, dict(truth)


def _table(project: Path, gen: str, name: str, schema):
    return store.read_table(project / layout.path(gen, name), schema)


def test_two_generations_train_on_written_and_logged_requests(own_run):
    project, results, server, _ = own_run
    assert [r["generation"] for r in results] == list(GENERATIONS) and all(r["logged"] for r in results)
    assert server.requests > 0
    for gen in GENERATIONS:
        train = _table(project, gen, layout.TRAIN, tables.TRAINSET)
        sources = train["source"].value_counts().to_dict()
        print(f"ROWS {gen} {dict(sorted(sources.items()))}")
        assert {"seed", "synthetic", "traffic"} <= set(sources), sources
        generated = _table(project, gen, layout.GENERATED, tables.GENERATED)
        logged = generated[generated["source"] == "traffic"]
        assert 0 < len(logged) <= TRAFFIC_ROWS
        assert (generated.loc[generated["source"] == "synthetic", "teacher"] == "teacher").all()
        report = store.read_json(project / layout.path(gen, layout.GENERATE_METRICS))
        assert report["sources"]["traffic"] == len(logged)
        profile = store.read_json(project / layout.path(gen, layout.FAILURE_PROFILE))
        assert "traffic" in profile["sources"] and 0 <= profile["sources"]["traffic"]["failure_rate"] <= 1
    # the slices are disjoint and in time order: generation 1 labels the next 120 requests
    first, second = (set(_table(project, g, layout.GENERATED, tables.GENERATED).query("source == 'traffic'")["request"])
                     for g in GENERATIONS)
    assert not first & second
    metrics = store.read_json(project / layout.path("gen-001", layout.METRICS))
    assert set(metrics["per_split"]) == {"user"}  # the held-out file of labelled traffic
    print(f"HELD-OUT accuracy {[store.read_json(project / layout.path(g, layout.METRICS))['per_split']['user'] for g in GENERATIONS]}")
    skills = set(metrics["per_skill"])
    assert "reserve_room" in skills and "weather" not in skills


def test_the_judge_verifies_the_logged_requests_labels(own_run):
    project, _, _, truth = own_run
    for gen in GENERATIONS:
        q = judge_on_traffic(_table(project, gen, layout.VERDICTS, tables.VERDICTS), truth)
        print(f"JUDGE {gen} traffic rows {q['rows']}, wrong labels {q['wrong']}, precision {q['precision']}, "
              f"recall {q['recall']}, kept labels right {q['kept_right']}")
        assert q["wrong"] > 0 and q["recall"] >= 0.9 and q["kept_right"] >= 0.95


def test_traffic_is_trained_on_and_never_in_evaluation(own_run):
    project, _, _, _ = own_run
    evals = store.read_table(project / layout.EVAL, tables.EVALSET)
    near = NearDuplicates(list(evals["request"]))
    keys = set(decontam.request_keys(evals["request"]))
    train = _table(project, "gen-001", layout.TRAIN, tables.TRAINSET)
    for request in train["request"]:
        assert decontam.request_key(request) not in keys and near.match(request) is None, request
    # the next generation's slice travels in the plan, and failed traffic rows are varied
    plan = _table(project, "gen-000", layout.PLAN, tables.PLAN)
    assert 0 < (plan["kind"] == "traffic").sum() <= TRAFFIC_ROWS
    logged_ids = set(train.loc[train["source"] == "traffic", "id"])
    probe = _table(project, "gen-000", layout.PROBE, tables.PROBE)
    failed_logged = set(probe.loc[~probe["correct"], "id"]) & set(
        _table(project, "gen-000", layout.TRAIN, tables.TRAINSET).query("source == 'traffic'")["id"])
    varied = _table(project, "gen-000", layout.PLAN, tables.PLAN)
    children = varied[varied["kind"] == "error_driven"]
    assert failed_logged and children["parent_id"].isin(failed_logged).any()
    assert logged_ids


def test_mlflow_logs_the_slice_and_the_redaction_counts_never_the_text(own_run):
    import mlflow
    from mlflow import MlflowClient

    from flows.lineage import setup_mlflow
    from flywheel.config import load

    project, _, _, _ = own_run
    setup_mlflow(load(project / "params.yaml"), project)
    client = MlflowClient()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string="tags.generation = 'gen-000'")
    run_ = runs[0]
    contexts = {tag.value for d in run_.inputs.dataset_inputs for tag in d.tags if tag.key == "mlflow.data.context"}
    assert "traffic" in contexts
    metrics = client.get_run(run_.info.run_id).data.metrics
    assert metrics["generate.redacted.email"] >= 1 and metrics["generate.redacted.card"] >= 1
    assert metrics["generate.rows.traffic"] > 0 and metrics["rows.traffic"] > 0
    params, tags = run_.data.params, run_.data.tags
    logged = _table(project, "gen-000", layout.GENERATED, tables.GENERATED).query("source == 'traffic'")["request"]
    for text in list(params.values()) + list(tags.values()):
        assert not any(r in str(text) for r in logged)


def test_a_growing_log_reruns_only_the_generation_whose_slice_changed(own_run, tmp_path):
    """New requests appended to the log, later than the old ones (`traffic.slice: time`):
    DVC reruns the two stages that read logs/, `prepare` and `expand`, and after them only
    the generation whose slice was not yet full. The run's log (168 distinct requests)
    filled gen-000's slice of 120 and left gen-001's at 48, so gen-000 is not generated,
    judged or trained again, and gen-001 is, on its grown slice."""
    from flows.results import lock_md5s

    project = shutil.copytree(own_run[0], tmp_path / "copy", symlinks=True)
    dvc = [sys.executable, "-m", "dvc"]

    def slices() -> list[int]:  # the traffic rows of each generation's plan: seed's is gen-000's slice
        return [int((_table(project, g, layout.PLAN, tables.PLAN)["kind"] == "traffic").sum())
                for g in (layout.SEED, *GENERATIONS)]

    before, sliced = lock_md5s(project), slices()
    assert sliced[0] == TRAFFIC_ROWS and 0 < sliced[1] < TRAFFIC_ROWS, sliced
    log = project / "logs" / "traffic.jsonl"
    last = max(dt.datetime.fromisoformat(json.loads(line)["timestamp"]) for line in log.read_text().splitlines())
    with log.open("a") as out:
        for i, r in enumerate(library_traffic(random.Random(41), 40, canaries=False)):
            stamp = (last + dt.timedelta(hours=1, minutes=i)).isoformat()
            out.write(json.dumps({"request": r["request"], "timestamp": stamp, "response": "ok"}) + "\n")
    status = json.loads(run(dvc + ["status", "--json"], project).stdout)
    assert set(status) == {"prepare", "expand@gen-000", "expand@gen-001"}, status  # the stages that read logs/
    ran = {line.split("'")[1] for line in run(dvc + ["repro"], project).stdout.splitlines()
           if line.startswith("Running stage")}
    assert ran == {"prepare", "expand@gen-000", "expand@gen-001"} | {f"{s}@gen-001" for s in layout.STAGES}
    after, grown = lock_md5s(project), slices()
    assert grown[0] == sliced[0] and grown[1] > sliced[1]
    changed = {p for p in after if after[p] != before[p]}
    assert str(layout.path("gen-000", layout.PLAN)) in changed
    assert not {p for p in changed if p.startswith((str(layout.gen_dir(layout.SEED)), str(layout.EVAL)))}
    assert not {p for p in changed if p.startswith(str(layout.gen_dir("gen-000")))} - {
        str(layout.path("gen-000", layout.PLAN))}


def _files(root: Path, skip: set[Path]):
    for p in root.rglob("*"):
        if p.is_file() and not any(s == p or s in p.parents for s in skip):
            yield p


def test_no_canary_reaches_the_server_or_any_file(own_run, tmp_path):
    """Where each canary was looked for: every request body the server received, every
    file of the project (data/ included: redaction happens where traffic is read), the
    DVC cache and remote, MLflow's database and artifacts, and Prefect's home; the only
    file that holds them is the user's own traffic file."""
    import os

    project, _, server, _ = own_run
    traffic_file = project / "logs" / "traffic.jsonl"
    assert all(c.encode() in traffic_file.read_bytes() for c in CANARIES)  # they were there to leak
    needles = [c.encode() for c in CANARIES] + [c.replace(" ", "").encode() for c in CANARIES]
    for body in server.bodies:
        text = json.dumps(json.loads(body))
        assert not any(n in body or n.decode() in text for n in needles)
    places = [project] + [Path(p) for p in (os.environ.get("PREFECT_HOME"),) if p]
    searched = 0
    for place in places:
        for path in _files(place, {traffic_file, project / ".git"}):
            data = path.read_bytes()
            searched += 1
            assert not any(n in data for n in needles), f"a canary in {path}"
    print(f"CANARY searched {len(server.bodies)} request bodies and {searched} files: none found")
    assert searched > 50


def test_with_redaction_off_the_canaries_reach_the_teacher(tmp_path):
    """The canary search can fail: with `redact.default: false` the logged requests go to
    the teacher as they are (docs/your-tools.md lists everywhere they then go)."""
    truth: dict = {}
    with FakeLLM(library_brain(truth)) as server:
        project, known = library_workspace(tmp_path / "off", server.url, redact=False)
        truth.update(known)
        for stage in (["prepare"], ["generate", "gen-000"]):
            run([sys.executable, "-m", "tasks", *stage], project)
        bodies = b"".join(server.bodies)
    assert any(c.encode() in bodies for c in CANARIES[:1])
    generated = _table(project, "gen-000", layout.GENERATED, tables.GENERATED)
    assert generated["request"].str.contains(CANARIES[0], regex=False).any()
