"""Orchestration of the flywheel: the Prefect flow that runs each generation's DVC stages
as tasks, and the only place with side effects outside the workspace (MLflow lineage,
the model registry, git tags, `dvc push`), and the modules only it uses: the preflight
checks, the loop-health measures and the run's report.
"""
