"""The flywheel where a team runs it (docs/deploy.md), with real servers on loopback:
PostgreSQL 15 behind the MLflow tracking server, moto's S3 server as the bucket for DVC and
for MLflow's artifacts, `prefect server start`, and `prefect worker start` polling a
process work pool from a directory of its own. `flywheel deploy` registers the deployment
from a bare git repository (the origin); each run happens in the worker's fresh clone."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import env, run
from flows.lineage import lock_md5s
from flywheel import layout
from servers import PG_BIN, S3_ENV, MLflowServer, Postgres, PrefectServer, S3

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    not (PG_BIN / "initdb").exists() or shutil.which("git") is None,
    reason=f"needs PostgreSQL 15 server binaries in {PG_BIN} (.ci/run installs Debian's postgresql-15) and git")]
POOL = "flywheel-pool"
DATA, ARTIFACTS = "flywheel-data", "flywheel-mlflow"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with contextlib.ExitStack() as up:  # whatever started is stopped, in reverse order
        prefect = PrefectServer(tmp_path_factory.mktemp("prefect-home"), env())
        up.callback(prefect.close)
        pg = Postgres()
        up.callback(pg.close)
        s3 = S3((DATA, ARTIFACTS))
        up.callback(s3.close)
        ml = MLflowServer(pg, s3, ARTIFACTS, tmp_path_factory.mktemp("mlflow") / "mlflow.log")
        up.callback(ml.close)
        yield {"pg": pg, "s3": s3, "mlflow": ml, "prefect": prefect.url}


def cluster_env(c, **extra) -> dict:
    """A machine of the team: the servers' URLs and the bucket's credentials, from the
    environment only."""
    return dict(env(), **S3_ENV, PREFECT_API_URL=c["prefect"], **extra)


def make_origin(c, small_project: Path, tmp: Path, endpoint: str | None = None) -> tuple[Path, str]:
    """The team's repository: the small project with an S3 DVC remote (at `endpoint`, the
    S3 server's own by default) and the MLflow server in params.yaml, its data pushed to
    the bucket; returns (bare origin, branch)."""
    project = tmp / "laptop"
    shutil.copytree(small_project, project, symlinks=True)
    e = cluster_env(c)
    for cmd in (["remote", "add", "-d", "-f", "shared", f"s3://{DATA}/dvc"],
                ["remote", "modify", "shared", "endpointurl", endpoint or c["s3"].url]):
        subprocess.run([sys.executable, "-m", "dvc", *cmd], cwd=project, env=e, check=True, capture_output=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["lineage"]["tracking_uri"] = c["mlflow"].url
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run([sys.executable, "-m", "dvc", "push", "-q"], cwd=project, env=e, check=True, capture_output=True)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "shared remote and MLflow server"], project)
    origin = tmp / "origin.git"
    run(["git", "clone", "-q", "--bare", str(project), str(origin)], tmp)
    return origin, run(["git", "branch", "--show-current"], project).stdout.strip()


def deploy(c, origin: Path, branch: str, name: str) -> None:
    laptop = origin.parent / "laptop"
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "--project", str(laptop), "deploy", "--pool", POOL,
                           "--repo", origin.as_uri(), "--branch", branch, "--cron", "0 2 * * *", "--name", name],
                          env=cluster_env(c), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def wait_task(api: str, run_id: str, name: str, states: tuple[str, ...], seconds: float = 600) -> None:
    """Until the flow run's task `name` is in one of `states`."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tasks = httpx.post(f"{api}/task_runs/filter", timeout=10,
                           json={"flow_runs": {"id": {"any_": [run_id]}}}).json()
        if any(t["name"] == name and t["state_type"] in states for t in tasks):
            return
        assert flow_run(api, run_id)["state_type"] in ("PENDING", "RUNNING", "SCHEDULED"), flow_run(api, run_id)
        time.sleep(1)
    raise AssertionError(f"task {name} of flow run {run_id} not {states} in {seconds:.0f} s")


def flow_run(api: str, run_id: str) -> dict:
    import httpx

    return httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()


def wait_run(api: str, run_id: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = flow_run(api, run_id)
        if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return r
        time.sleep(2)
    raise AssertionError(f"flow run {run_id} not finished in {seconds:.0f} s: {flow_run(api, run_id)['state_type']}")


def start_worker(c, home: Path) -> subprocess.Popen:
    home.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"],
                            cwd=home, env=cluster_env(c, PREFECT_WORKER_QUERY_SECONDS="2"),
                            stdout=open(home / "worker.log", "a"), stderr=subprocess.STDOUT, start_new_session=True)


def trigger(c, name: str = "nightly") -> str:
    out = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", f"flywheel/{name}"],
                         env=cluster_env(c), capture_output=True, text=True, check=True).stdout
    return next(ln.split()[-1] for ln in out.splitlines() if "UUID" in ln)


def origin_file(origin: Path, ref: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=origin, capture_output=True, text=True,
                          check=True).stdout


def lock_outs(lock_text: str, generation: str | None = None) -> dict[str, str]:
    """path -> md5 of the outputs in a dvc.lock's text (of one generation's stages if given)."""
    stages = yaml.safe_load(lock_text)["stages"]
    return {o["path"]: o["md5"] for name, s in stages.items() if generation is None or name.endswith(f"@{generation}")
            for o in s.get("outs", [])}


@pytest.fixture(scope="module")
def deployed(cluster, small_project, tmp_path_factory):
    """deploy, trigger, and one generation run by the worker in its own clone."""
    from flywheel.config import load

    from servers import stop

    tmp = tmp_path_factory.mktemp("team")
    origin, branch = make_origin(cluster, small_project, tmp)
    laptop = tmp / "laptop"
    deploy(cluster, origin, branch, "nightly")
    worker = start_worker(cluster, tmp / "worker")
    try:
        started = time.monotonic()
        run_id = trigger(cluster)
        # PostgreSQL restarted mid-run, once MLflow holds gen-001's lineage and before gen-002's.
        wait_task(cluster["prefect"], run_id, "record@gen-001", ("COMPLETED",))
        cluster["pg"].stop()
        time.sleep(3)
        cluster["pg"].start()
        final = wait_run(cluster["prefect"], run_id, 900)
        seconds = time.monotonic() - started
    finally:
        stop(worker)
    cfg = load(laptop / "params.yaml")
    yield {"origin": origin, "branch": branch, "run": final, "seconds": seconds, "tmp": tmp, "cfg": cfg,
           "worker_log": (tmp / "worker" / "worker.log").read_text(), "new": f"gen-{len(cfg.generations):03d}"}


def test_the_deployment_is_a_cron_on_the_pool_pulled_from_git(cluster, deployed):
    import httpx

    api = cluster["prefect"]
    dep = httpx.get(f"{api}/deployments/name/flywheel/nightly", timeout=10).json()
    assert dep["work_pool_name"] == POOL
    assert dep["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
    assert dep["parameters"] == {"project": ".", "generations": 1, "shared": True}
    assert dep["global_concurrency_limit"]["limit"] == 1
    clone = dep["pull_steps"][0]["prefect.deployments.steps.git_clone"]
    assert clone["repository"] == deployed["origin"].as_uri() and clone["branch"] == deployed["branch"]
    pool = httpx.get(f"{api}/work_pools/{POOL}", timeout=10).json()
    assert pool["type"] == "process"


def test_the_worker_ran_a_generation_and_published_it(cluster, deployed):
    assert deployed["run"]["state_type"] == "COMPLETED", (deployed["run"]["state"], deployed["worker_log"][-3000:])
    print(f"end to end: {deployed['seconds']:.0f} s")
    new, origin = deployed["new"], deployed["origin"]
    tags = run(["git", "tag"], origin).stdout.split()
    assert new in tags
    lock = origin_file(origin, new, "dvc.lock")
    assert origin_file(origin, deployed["branch"], "dvc.lock") == lock  # the branch moved to the tag too
    assert new in yaml.safe_load(origin_file(origin, new, "params.yaml"))["generations"]
    outs = lock_outs(lock, new)
    assert str(layout.path(new, layout.MODEL)) in outs
    keys = cluster["s3"].keys(DATA)
    in_git = [p for p in outs if subprocess.run(["git", "cat-file", "-e", f"{new}:{p}"], cwd=origin,
                                    stderr=subprocess.DEVNULL).returncode == 0]
    assert in_git and len(in_git) < len(outs)  # the small metrics files ride in git, the data in the bucket
    for path, md5 in outs.items():
        assert path in in_git or f"dvc/files/md5/{md5[:2]}/{md5[2:]}" in keys, path


def test_mlflow_on_postgres_holds_the_lineage(cluster, deployed, tmp_path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=cluster["mlflow"].url)
    cfg = deployed["cfg"]
    new = deployed["new"]
    exp = client.get_experiment_by_name(cfg.lineage.experiment)
    for gen in cfg.generations:  # nothing lost across PostgreSQL's restart
        assert len(client.search_runs([exp.experiment_id], f"tags.generation = '{gen}'")) == 1, gen
    runs = client.search_runs([exp.experiment_id], f"tags.generation = '{new}'")
    assert len(runs) == 1 and runs[0].data.tags["mlflow.parentRunId"]
    md5 = lock_outs(origin_file(deployed["origin"], new, "dvc.lock"))
    for inp in runs[0].inputs.dataset_inputs:
        source = json.loads(inp.dataset.source)["uri"]
        assert inp.dataset.digest == md5[source], source
    versions = client.search_model_versions(f"name = '{cfg.lineage.registered_model}'")
    assert any(v.run_id == runs[0].info.run_id for v in versions)
    # The artifacts went through the server into the bucket, where another machine finds them.
    assert any(k.startswith("mlflow/") for k in cluster["s3"].keys(ARTIFACTS))
    got = mlflow.artifacts.download_artifacts(run_id=runs[0].info.run_id, artifact_path="health.json",
                                              dst_path=str(tmp_path), tracking_uri=cluster["mlflow"].url)
    assert json.loads(Path(got).read_text())


@pytest.fixture(scope="module")
def second_clone(cluster, deployed) -> Path:
    """Another machine of the team: a fresh clone of the origin with its data pulled from the bucket."""
    clone = deployed["tmp"] / "second-clone"
    run(["git", "clone", "-q", "--branch", deployed["branch"], str(deployed["origin"]), str(clone)], deployed["tmp"])
    subprocess.run([sys.executable, "-m", "dvc", "pull", "-q"], cwd=clone, env=cluster_env(cluster), check=True,
                   capture_output=True)
    return clone


def test_a_fresh_clone_pulls_from_the_bucket_and_is_up_to_date_offline(cluster, deployed, second_clone):
    clone, e = second_clone, cluster_env(cluster)
    closed = ["unshare", "-n"] if os.geteuid() == 0 else []  # a network namespace with no interface up
    proc = subprocess.run([*closed, sys.executable, "-m", "dvc", "repro"], cwd=clone, env=e, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Running stage" not in proc.stdout and "up to date" in proc.stdout
    assert lock_md5s(clone)[str(layout.path(deployed["new"], layout.MODEL))]


def test_three_nights_bucket_cut_then_worker_killed_then_the_same_md5s(cluster, deployed, small_project,
                                                                       tmp_path_factory):
    """Three runs of one deployment, each in a fresh clone (one run's cost saved over a
    repository per fault):

    1. DVC reaches the bucket through a relay, cut once training starts: `publish` fails
       after its three tries with `dvc push failed`; the run ends Failed, no tag reaches
       the origin.
    2. With the bucket back, the worker and its flow-run process die together (a machine
       lost) while training. The run stops beating; flywheel deploy's automation marks it
       Crashed, which frees the deployment's one slot. Nothing reaches the origin.
    3. On a new worker, the run completes and pushes the generation, with the md5s of the
       undisturbed run of `deployed`."""
    import httpx
    import psutil

    from servers import Gate, stop

    api, new = cluster["prefect"], deployed["new"]
    tmp = tmp_path_factory.mktemp("faults")
    gate = Gate(cluster["s3"].port)
    origin, branch = make_origin(cluster, small_project, tmp, endpoint=gate.url)
    deploy(cluster, origin, branch, "faults")
    worker = start_worker(cluster, tmp / "worker")
    try:
        cut = trigger(cluster, "faults")
        wait_task(api, cut, f"train@{new}", ("RUNNING", "COMPLETED"))
        gate.down()
        failed = wait_run(api, cut, 900)
        tags_after_cut = run(["git", "tag"], origin).stdout.split()
        gate.up()

        killed = trigger(cluster, "faults")
        wait_task(api, killed, f"train@{new}", ("RUNNING",))
        family = [worker.pid, *(c.pid for c in psutil.Process(worker.pid).children(recursive=True))]
        for pid in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        worker.wait()
        assert flow_run(api, killed)["state_type"] == "RUNNING"  # nobody left to say otherwise
        crashed = wait_run(api, killed, 300)
        tags_after_kill = run(["git", "tag"], origin).stdout.split()

        worker = start_worker(cluster, tmp / "worker2")
        third = wait_run(api, trigger(cluster, "faults"), 900)
    finally:
        stop(worker)
        gate.down()
    assert failed["state_type"] == "FAILED"
    assert "dvc push failed" in failed["state"]["message"], failed["state"]
    logs = httpx.post(f"{api}/logs/filter", timeout=10, json={"logs": {"flow_run_id": {"any_": [cut]}},
                                                              "limit": 200, "sort": "TIMESTAMP_DESC"}).json()
    assert sum("dvc push failed" in log["message"] for log in logs) >= 3  # the first try and two retries
    assert new not in tags_after_cut
    assert crashed["state_type"] == "CRASHED" and "no heartbeat" in crashed["state"]["message"], crashed["state"]
    assert new not in tags_after_kill
    assert third["state_type"] == "COMPLETED", third["state"]
    assert new in run(["git", "tag"], origin).stdout.split()
    outs = lock_outs(origin_file(origin, new, "dvc.lock"), new)
    assert outs == lock_outs(origin_file(deployed["origin"], new, "dvc.lock"), new)
    model = outs[str(layout.path(new, layout.MODEL))]
    assert f"dvc/files/md5/{model[:2]}/{model[2:]}" in cluster["s3"].keys(DATA)


@pytest.mark.parametrize("args, expected", [
    (["--cron", "every night"], "--cron 'every night' is not a valid cron expression"),
    (["--generations", "0"], "--generations 0: a night makes at least one generation"),
])
def test_bad_deploy_arguments_are_refused_in_one_line(small_project, shared_prefect, args, expected):
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "--project", str(small_project), "deploy", "--pool", POOL,
                           "--repo", "file:///nowhere.git", "--name", "refused", *args],
                          env=dict(env(), PREFECT_API_URL=shared_prefect), capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {expected}", proc.stderr


def test_deploy_without_a_prefect_server_is_refused(small_project):
    e = env()
    e.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "--project", str(small_project), "deploy", "--pool", POOL,
                           "--repo", "file:///nowhere.git"], env=e, capture_output=True, text=True)
    assert proc.returncode == 2 and "PREFECT_API_URL is not set" in proc.stderr, proc.stderr


def test_the_lineage_walk_and_backfill_work_against_the_server(cluster, deployed, second_clone):
    """From the second clone: `flywheel lineage` walks the champion back to the seed set on
    the server; with the newest generation's version and run deleted there (lineage lost),
    `flywheel lineage --backfill` records it again with the md5s of dvc.lock."""
    import mlflow

    cfg, new = deployed["cfg"], deployed["new"]
    flywheel = [sys.executable, "-m", "flows.cli", "--project", str(second_clone)]
    client = mlflow.MlflowClient(tracking_uri=cluster["mlflow"].url)
    name = cfg.lineage.registered_model
    (lost,) = [v for v in client.search_model_versions(f"name = '{name}'") if v.tags.get("generation") == new]
    champion = client.get_model_version_by_alias(name, "champion")  # the alias lives on the server
    # the newest version walks back through every generation; the champion (the gate may have
    # kept an older one) through its own
    for start, versions in ((lost.version, len(cfg.generations) + 1),
                            ("champion", int(champion.tags["generation"].split("-")[1]) + 1)):
        walk = subprocess.run([*flywheel, "lineage", start], env=cluster_env(cluster), capture_output=True, text=True)
        assert walk.returncode == 0, walk.stderr
        assert walk.stdout.count(f"model {name} v") == versions and "(the seed set)" in walk.stdout, walk.stdout
    client.delete_model_version(name, lost.version)
    client.delete_run(lost.run_id)
    back = subprocess.run([*flywheel, "lineage", "--backfill"], env=cluster_env(cluster), capture_output=True,
                          text=True)
    assert back.returncode == 0, back.stderr
    assert f"{new}: recorded" in back.stdout and "gen-000: already recorded" in back.stdout, back.stdout
    (again,) = [v for v in client.search_model_versions(f"name = '{name}'") if v.tags.get("generation") == new]
    lock = lock_md5s(second_clone)
    assert again.tags["dataset.training.md5"] == lock[again.tags["dataset.training.path"]]
