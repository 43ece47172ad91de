"""`flywheel`: the command line of the project (installed into .venv by `make`).

    flywheel run [--generations N]     run the flow; end with a table per generation
                 [--params FILE]       first write a profile's sections over params.yaml
    flywheel check [--offline]         what `run` checks before it starts (params, templates,
                                       input files, model servers), alone
    flywheel status                    generations made, what is stale, the champion
    flywheel lineage [VERSION|champion]  model -> generation -> datasets -> parent model ...
    flywheel lineage --backfill        record generations a run without MLflow left out
    flywheel schedule --cron "0 2 * * *"  a nightly deployment, served until stopped
    flywheel deploy --pool P --repo URL  a nightly deployment on a work pool, run by workers
    flywheel ui                        MLflow and Prefect UIs on localhost

Prefect keeps its state in <project>/.prefect and MLflow in <project>/mlflow.db, so the
UIs show what `run` and `schedule` did. Bad arguments or a broken workspace: one line on
stderr and exit status 2; a failed run: exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from flywheel.stage import offline


class UsageError(Exception):
    pass


def _workspace(project: str) -> Path:
    root = Path(project).resolve()
    for needed in ("params.yaml", "dvc.yaml", ".dvc"):
        if not (root / needed).exists():
            raise UsageError(f"{root}: not a flywheel workspace ({needed} is missing)")
    return root


def _prepare_env(root: Path) -> None:
    offline()
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")


def _config(root: Path):
    from flywheel.config import ConfigError, load

    try:
        return load(root / "params.yaml")
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _preflight(root: Path, offline: bool):
    from flywheel.config import ConfigError
    from flows.preflight import check
    from flywheel.store import DataError

    try:
        return check(root, offline=offline)
    except (ConfigError, DataError) as exc:
        raise UsageError(str(exc)) from None


def cmd_check(args) -> int:
    root = _workspace(args.project)
    _preflight(root, offline=args.offline)
    print(f"{root}: params, templates, input files{'' if args.offline else ' and model servers'}: ok")
    return 0


def _client(cfg, root: Path):
    import mlflow

    _setup_mlflow(cfg, root)
    return mlflow.MlflowClient()


def _setup_mlflow(cfg, root: Path) -> None:
    from flows.lineage import setup_mlflow

    warning = setup_mlflow(cfg, root)
    if warning:
        print(f"flywheel: warning: {warning}", file=sys.stderr)


def cmd_run(args) -> int:
    root = _workspace(args.project)
    if args.generations < 0:
        raise UsageError("--generations must be 0 or more")
    if args.params:  # a profile (profiles/*.yaml) written over params.yaml, which DVC reads
        from flywheel.config import ConfigError, apply_profile

        try:
            changed = apply_profile(Path(args.params), root / "params.yaml")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        print(f"params.yaml: {len(changed)} keys from {args.params}"
              + (f" ({', '.join(changed)})" if changed else " (already there)"))
    _preflight(root, offline=args.offline)
    _prepare_env(root)
    if args.offline:  # every stage process inherits it: a cache miss is an error, never a call
        from flywheel.stage import OFFLINE_LLM

        os.environ[OFFLINE_LLM] = "1"
    from flows.flywheel import flywheel
    from flows.runlock import RunLocked, run_lock

    try:  # refused here, before Prefect starts, when another run holds the workspace
        with run_lock(root, "flywheel run") as note:
            if note:
                print(f"flywheel: {note}", file=sys.stderr)
            state = flywheel(project=str(root), generations=args.generations, return_state=True)
    except RunLocked as exc:
        raise UsageError(str(exc)) from None
    if not state.is_completed():
        print(f"error: flywheel run failed: {state.message}", file=sys.stderr)
        return 1
    from flows.report import print_table

    print_table([r["table"] for r in state.result()])
    print("\nNext: `flywheel ui` (MLflow + Prefect), `flywheel lineage champion`, `dvc plots show`, "
          "`dvc metrics show`.")
    return 0


def cmd_status(args) -> int:
    root = _workspace(args.project)
    cfg = _config(root)
    _prepare_env(root)
    from flows.workspace import dvc

    code, out = dvc(root, "status", "--json")
    if code != 0:
        raise UsageError(f"dvc status failed: {out.splitlines()[-1:]}")
    stale = sorted(json.loads(out[out.index("{"):]) if "{" in out else {})
    from flows.results import made as made_generations

    made = made_generations(root, cfg)
    print(f"generations in params.yaml: {', '.join(cfg.generations)}")
    print(f"made: {', '.join(made) or 'none'}")
    print(f"stale stages: {', '.join(stale) or 'none (up to date)'}")
    from flows.lineage import champion

    if (root / "mlflow.db").exists() or cfg.lineage.tracking_uri:
        best = champion(_client(cfg, root), cfg.lineage.registered_model)
        where = "none" if best is None else f"version {best.version} ({best.tags.get('generation')})"
        print(f"champion: {where}")
    else:
        print("champion: none (no MLflow database yet)")
    if made:
        from flows.report import markdown, summary

        print("\n" + markdown(summary(root)))
    return 0


def cmd_lineage(args) -> int:
    root = _workspace(args.project)
    cfg = _config(root)
    _prepare_env(root)
    if args.backfill:
        return _backfill(cfg, root)
    from mlflow.exceptions import MlflowException

    from flows.lineage import chain, champion

    client = _client(cfg, root)
    name = cfg.lineage.registered_model
    try:
        start = champion(client, name) if args.version == "champion" else client.get_model_version(name, args.version)
    except MlflowException:
        start = None
    if start is None:
        raise UsageError(f"model {name}: no version {args.version!r}")
    for v in chain(client, name, start):
        t = v.tags
        print(f"model {name} v{v.version}  ({t.get('generation')}, gate: {t.get('gate')}: {t.get('gate_reason')})")
        for ctx in ("training", "judged", "generated", "evaluation"):
            print(f"  {ctx:<10} {t.get(f'dataset.{ctx}.path')}  md5 {t.get(f'dataset.{ctx}.md5')}")
        parent = t.get("trained_from")
        print(f"  planned from the failures of: {t.get('trained_from_generation')}"
              + (f" (model v{parent})" if parent and parent != "seed" else " (the seed set)"))
    return 0


def _backfill(cfg, root: Path) -> int:
    """Record in MLflow every made generation it does not have yet (a run that found MLflow
    unreachable leaves them out). Generations already there are left as they are."""
    import tempfile

    import mlflow

    from flows import results
    from flows.lineage import log_generation

    made = results.made(root, cfg)
    if not made:
        raise UsageError("no generation has been made yet: nothing to backfill")
    try:
        _setup_mlflow(cfg, root)
        with mlflow.start_run(run_name="backfill") as parent, tempfile.TemporaryDirectory() as tmp:
            for g in made:
                res = log_generation(cfg, root, results.read(root, cfg, g), parent.info.run_id, Path(tmp))
                state = "recorded" if res["logged"] else "already recorded"
                print(f"{g}: {state}: model version {res['version']} "
                      f"({'promoted' if res['promoted'] else 'not promoted'}: {res['reason']})")
    except Exception as exc:  # noqa: BLE001 - one line, whatever MLflow raised
        raise UsageError(f"backfill failed, MLflow at {cfg.lineage.tracking_uri or 'mlflow.db'}: "
                         f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    return 0


def _interrupt_on_sigterm() -> None:
    """Let `kill` stop the command the way Ctrl-C does, so the servers it started stop too."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _wait_http(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def spawn_prefect_server(port: int, env: dict[str, str] | None = None, log=subprocess.DEVNULL) -> subprocess.Popen:
    """A local Prefect server on SQLite (PREFECT_HOME), listening on localhost only."""
    return subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=dict(os.environ if env is None else env), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def await_healthy(servers: dict[str, tuple[subprocess.Popen, str]], seconds: float) -> None:
    """Wait until every server answers its health URL; if one does not, stop them all."""
    for what, (proc, url) in servers.items():
        if not _wait_http(url, seconds):
            for other, _ in servers.values():
                if other.poll() is None:
                    os.killpg(other.pid, signal.SIGKILL)
            raise UsageError(f"{what} did not become healthy at {url}")


def start_prefect_server(port: int) -> subprocess.Popen:
    proc = spawn_prefect_server(port)
    await_healthy({"the Prefect server": (proc, f"http://127.0.0.1:{port}/api/health")}, 90)
    return proc


def _scheduled_workspace(args) -> Path:
    """The workspace of `schedule` and `deploy`, with a valid params.yaml and --cron."""
    root = _workspace(args.project)
    _config(root)
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=args.cron)
    except ValueError:
        raise UsageError(f"--cron {args.cron!r} is not a valid cron expression") from None
    return root


def cmd_schedule(args) -> int:
    root = _scheduled_workspace(args)
    _prepare_env(root)
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        server = start_prefect_server(args.port)
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{args.port}/api"
        print(f"Prefect server: http://127.0.0.1:{args.port}")
    from flows.deploy import one_at_a_time
    from flows.flywheel import flywheel

    _interrupt_on_sigterm()
    try:
        flywheel.serve(name="nightly", cron=args.cron, parameters={"project": str(root), "generations": 1},
                       global_limit=one_at_a_time())
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
    return 0


def cmd_deploy(args) -> int:
    """A deployment on a work pool, pulled from git: any worker polling the pool runs it in
    a fresh clone (`dvc pull`, the stages, `dvc push`, commit and tag pushed to origin)."""
    _scheduled_workspace(args)
    if args.generations < 1:
        raise UsageError(f"--generations {args.generations}: a night makes at least one generation")
    if not os.environ.get("PREFECT_API_URL"):
        raise UsageError("PREFECT_API_URL is not set: a deployment lives on the Prefect server the workers poll")
    from flows.deploy import deploy

    try:
        deployment_id = deploy(repo=args.repo, branch=args.branch, pool=args.pool, pool_type=args.pool_type,
                               cron=args.cron, generations=args.generations, name=args.name, image=args.image)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"deployment flywheel/{args.name} ({deployment_id}) on work pool {args.pool!r}, cron {args.cron!r}: "
          f"start a worker with `prefect worker start --pool {args.pool}`")
    return 0


def cmd_ui(args) -> int:
    root = _workspace(args.project)
    cfg = _config(root)
    _prepare_env(root)
    from flows.lineage import tracking_uri

    _interrupt_on_sigterm()
    # Both servers start at once; each takes 10-20 s to answer.
    prefect_server = spawn_prefect_server(args.prefect_port)
    mlflow_server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                                      tracking_uri(cfg, root), "--host", "127.0.0.1", "--port", str(args.mlflow_port)],
                                     cwd=root, start_new_session=True, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
    procs = [prefect_server, mlflow_server]
    await_healthy({"the MLflow server": (mlflow_server, f"http://127.0.0.1:{args.mlflow_port}/health"),
                   "the Prefect server": (prefect_server, f"http://127.0.0.1:{args.prefect_port}/api/health")}, 90)
    print(f"MLflow:  http://127.0.0.1:{args.mlflow_port}\nPrefect: http://127.0.0.1:{args.prefect_port}\n"
          "Ctrl-C to stop.")
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="flywheel", description="Run and inspect the data flywheel.")
    ap.add_argument("--project", default=".", help="the flywheel workspace (default: current directory)")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the flow (the main job)")
    run.add_argument("--generations", type=int, default=0, help="new generations to add before running")
    run.add_argument("--params", metavar="FILE", help="a profile (e.g. profiles/smollm2.yaml): its sections are "
                     "written over params.yaml (comments kept) before the run")
    run.add_argument("--offline", action="store_true",
                     help="answer teacher and judge calls only from the cache; a miss is an error")
    run.set_defaults(fn=cmd_run)
    chk = sub.add_parser("check", help="the checks `run` makes first: params, templates, input files, servers")
    chk.add_argument("--offline", action="store_true", help="skip the model-server connections")
    chk.set_defaults(fn=cmd_check)
    sub.add_parser("status", help="generations made, stale stages, champion").set_defaults(fn=cmd_status)
    lin = sub.add_parser("lineage", help="walk a model version back to the seed")
    lin.add_argument("version", nargs="?", default="champion")
    lin.add_argument("--backfill", action="store_true",
                     help="record in MLflow the made generations it is missing (after a run without MLflow)")
    lin.set_defaults(fn=cmd_lineage)
    sch = sub.add_parser("schedule", help="serve a cron deployment of the flow")
    sch.add_argument("--cron", required=True)
    sch.add_argument("--port", type=int, default=4200)
    sch.set_defaults(fn=cmd_schedule)
    dep = sub.add_parser("deploy", help="a cron deployment on a work pool, run by workers from the git repository")
    dep.add_argument("--pool", required=True, help="the work pool (created if missing)")
    dep.add_argument("--pool-type", default="process", help="the type of a pool created here (process, docker, "
                     "kubernetes, ...)")
    dep.add_argument("--repo", required=True, help="the git URL workers clone (and push generations to)")
    dep.add_argument("--branch", default="main")
    dep.add_argument("--cron", default="0 2 * * *")
    dep.add_argument("--generations", type=int, default=1, help="new generations per run")
    dep.add_argument("--name", default="nightly")
    dep.add_argument("--image", default=None, help="for docker or kubernetes pools: an image with the project's "
                     "requirements installed")
    dep.set_defaults(fn=cmd_deploy)
    ui = sub.add_parser("ui", help="start the MLflow and Prefect UIs on localhost")
    ui.add_argument("--mlflow-port", type=int, default=5000)
    ui.add_argument("--prefect-port", type=int, default=4200)
    ui.set_defaults(fn=cmd_ui)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
