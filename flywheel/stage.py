"""What every stage command shares: its entry point, seeds, and progress reporting.

`run(main)` is the `__main__` of each `tasks/<stage>.py` (which `python -m tasks <stage>`
starts, with the numeric kernels pinned: flywheel/kernels.py): it reads the generation name
from the command line, loads the config, hands `main` the stage's view of it (only the
params its dvc.yaml entry declares can be read: config.ConfigView), and turns a
`FlywheelError` (flywheel/errors.py) or `OSError` (a full disk) into one line on stderr
and exit status 2, so DVC (and Prefect above it) stop with a message a person can act on
instead of a traceback.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Callable

from flywheel import kernels
from flywheel.config import ConfigView, load, stage_view
from flywheel.errors import FlywheelError

# Set to 1 (e.g. by `flywheel run --offline`) to make every uncached model call an error.
OFFLINE_LLM = "FLYWHEEL_OFFLINE"

# No process the project starts may reach for the network.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_ENABLE_TELEMETRY": "false",
               "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}


def offline() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def child_env() -> dict[str, str]:
    """Environment for a process the project starts: offline, with this venv's tools first."""
    env = dict(os.environ, **OFFLINE_ENV)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def model_call_env() -> dict:
    """What a stage's model-call session (flywheel/backends/session.py) takes from the
    environment: offline mode and the API keys, read here, at the edge, and nowhere else."""
    return {"offline": os.environ.get(OFFLINE_LLM) == "1", "secrets": os.environ}


def stage_seed(seed: int, generation: str, stage: str) -> int:
    """A seed per (run seed, generation, stage): independent streams, stable across runs."""
    digest = hashlib.sha256(f"{seed}/{generation}/{stage}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def log(stage: str, message: str) -> None:
    print(f"[{stage}] {message}", flush=True)


class Progress:
    """A rich bar on a terminal; elsewhere (DVC under Prefect, CI) a line every 10%."""

    def __init__(self, stage: str, what: str, total: int):
        self.stage, self.what, self.total, self.done, self._tenths = stage, what, max(total, 1), 0, 0
        self._start = time.monotonic()
        self._bar = None
        if sys.stdout.isatty():
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task(f"{stage}: {what}", total=self.total)

    def advance(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n, description=f"{self.stage}: {self.what} {note}")
        elif self.done * 10 // self.total > self._tenths:
            self._tenths = self.done * 10 // self.total
            log(self.stage, f"{self.what}: {self.done}/{self.total} {note}".rstrip())

    def close(self) -> float:
        if self._bar is not None:
            self._bar.stop()
        return time.monotonic() - self._start


def run(stage: str, main: Callable[[ConfigView, str], None], *, per_generation: bool = True) -> None:
    args = sys.argv[1:]
    kernels.require(["-m", "tasks", stage, *args])  # started as `python -m tasks.<stage>`: again, pinned
    offline()
    usage = f"usage: python -m tasks {stage}" + (" GENERATION" if per_generation else "")
    if len(args) != (1 if per_generation else 0):
        print(usage, file=sys.stderr)
        sys.exit(2)
    start = time.monotonic()
    try:
        cfg = load()
        generation = args[0] if per_generation else ""
        if per_generation:
            cfg.generation(generation)
        main(stage_view(cfg, stage), generation)
    except FlywheelError as exc:
        print(f"error: {stage}: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # disk full, permissions, ...: every output is written to a temp file first,
        where = f"{exc.filename}: " if exc.filename else ""  # so the previous one is still there
        print(f"error: {stage}: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    log(stage, f"done in {time.monotonic() - start:.1f}s")
