"""`flywheel deploy`: the flow as a Prefect deployment on a work pool, pulled from git.

The deployment's pull step clones `branch` of `repo` into the flow run's working
directory; the run then has `shared=True` (flows/flywheel.py): `dvc pull` from the DVC
remote that `.dvc/config` names, the stages, and for each generation `dvc push`, then
its commit and tag pushed to origin. Lineage goes where `lineage.tracking_uri` in the
clone's params.yaml points. The same definition serves a docker or kubernetes pool:
the pool's job template decides where the run happens, `image` what it runs in.
"""

from __future__ import annotations

ENTRYPOINT = "flows/flywheel.py:flywheel"
# A run whose machine dies stays Running, holding the deployment's one slot, until the
# slot's lease runs out (300 s). Runs beat every HEARTBEAT s; an automation marks a run
# that missed them for SILENCE s Crashed, which frees the slot (Prefect's zombie-run recipe).
HEARTBEAT, SILENCE = 30, 90
ZOMBIES = "flywheel: crash runs that stopped beating"


def one_at_a_time():
    """A deployment's concurrency limit: a run that comes due while the previous one is still
    going is cancelled by the Prefect server (not failed, not queued, never run beside it in
    another clone, where two runs would race to push gen-N)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    return ConcurrencyLimitConfig(limit=1, collision_strategy="CANCEL_NEW")


def ensure_pool(name: str, pool_type: str) -> None:
    """Create the work pool with its worker type's default job template, if missing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.utilities.asyncutils import run_coro_as_sync
    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            template = run_coro_as_sync(get_default_base_job_template_for_infrastructure_type(pool_type))
            if template is None:
                raise ValueError(f"work pool type {pool_type!r}: no worker of that type is installed") from None
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type, base_job_template=template))
            return
        if pool.type != pool_type:
            raise ValueError(f"work pool {name!r} exists with type {pool.type!r}, not {pool_type!r}")


def ensure_zombie_automation() -> None:
    """The server-side automation that marks a flow run Crashed once its heartbeats stop."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    try:
        Automation.read(name=ZOMBIES)
        return
    except ValueError:  # not there yet
        pass
    Automation(
        name=ZOMBIES,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=SILENCE)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {SILENCE} s: its worker or machine died")],
    ).create()


def deploy(*, repo: str, branch: str, pool: str, pool_type: str, cron: str, generations: int,
           name: str = "nightly", image: str | None = None) -> str:
    """Register (or update) the deployment; returns its id."""
    from prefect.runner.storage import GitRepository

    from flows.flywheel import flywheel

    ensure_pool(pool, pool_type)
    ensure_zombie_automation()
    source = flywheel.from_source(source=GitRepository(url=repo, branch=branch), entrypoint=ENTRYPOINT)
    return str(source.deploy(
        name=name, work_pool_name=pool, cron=cron, image=image, build=False, push=False,
        job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT)}},
        parameters={"project": ".", "generations": generations, "shared": True},
        concurrency_limit=one_at_a_time(),
        print_next_steps=False))
