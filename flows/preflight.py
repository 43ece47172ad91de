"""Checks `flywheel run` makes before it starts anything (and `flywheel check` alone).

A night's run should not spend an hour and then stop on something visible at the start.
Before Prefect, DVC or MLflow start, and before any file is written:
- params.yaml loads (keys, types, generations; config.py);
- every template a model stage will render exists, parses, and names only variables its
  stage supplies (the writer too, where the domain has the teacher write requests);
- the domain is known, fits its metric and has what it needs from the other sections
  (flywheel/domain.py), and its input files and the gold file read cleanly (`llm`:
  readable, UTF-8, non-empty inputs and labels, no NaN, no oversized row, at least one row);
- a student of your own (`student.model`) can be one: the folder exists with a config,
  safetensors weights and a tokenizer with a chat template, the LoRA target modules are
  modules of it, peft can wrap it, the device is there (flywheel/hf_student.check_base);
- every OpenAI-compatible server in the config accepts a TCP connection (not in offline
  mode, where no call is made).
Each failure is one line naming the file or key; the caller exits with status 2.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from flywheel.config import BackendConfig, Config, ConfigError, load

CONNECT_TIMEOUT_S = 3.0


def _backends(cfg: Config) -> list[tuple[str, BackendConfig]]:
    out = []
    if isinstance(cfg.generate.teacher, BackendConfig):
        out.append(("generate.teacher", cfg.generate.teacher))
    out += [(f"judge.committee[{i}]", b) for i, b in enumerate(cfg.judge.committee)]
    return out


def reachable(where: str, backend: BackendConfig) -> None:
    url = urlsplit(backend.base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(f"params.yaml: {where}.base_url: cannot connect to {url.hostname}:{port} "
                          f"({exc.strerror or type(exc).__name__}); is the server running?") from None


def check(root: Path, *, offline: bool = False) -> Config:
    """Everything above, in `root`; returns the config. Raises ConfigError or DataError."""
    from flywheel import domain
    from flywheel.backends import templates
    from flywheel.backends.committee import JUDGE_VARIABLES

    cfg = load(root / "params.yaml")
    folder = root / cfg.domain.path
    if not folder.is_dir():
        raise ConfigError(f"params.yaml: domain.path: {cfg.domain.path!r} is not a directory")
    dom = domain.check(cfg, root)
    backends = _backends(cfg)
    if isinstance(cfg.generate.teacher, BackendConfig):
        templates.load(folder / cfg.generate.template).check(dom.teacher_variables)
        if dom.needs_writer:
            templates.load(folder / cfg.generate.writer).check(dom.writer_variables)
    if cfg.judge.committee:
        templates.load(folder / cfg.judge.template).check(JUDGE_VARIABLES)
    dom.check_files(cfg.traffic)
    from flywheel.student import StudentError, kind_for

    try:
        kind_for(cfg.student).check(cfg.student, dom, root)
    except StudentError as e:
        raise ConfigError(f"params.yaml: {e}") from None
    if cfg.judge.calibration.gold:
        dom.read_gold(folder / cfg.judge.calibration.gold)
    if not offline:
        for where, backend in backends:
            reachable(where, backend)
    return cfg
