"""One module per stage of a flywheel generation; each is `python -m tasks.<stage>`.

DAG per generation: generate -> judge -> compose -> train -> evaluate -> probe -> expand,
after a one-off `prepare`. `dvc.yaml` chains them; see the README.
"""
