"""One module per stage of a flywheel generation.

DAG per generation: generate -> judge -> compose -> train -> evaluate -> probe -> expand,
after a one-off `prepare`. `dvc.yaml` chains them; see the README. Every stage runs as
`python -m tasks <stage> [generation]` (this package's `__main__.py`), which pins the
numeric kernels before the stage imports numpy or torch.
"""
