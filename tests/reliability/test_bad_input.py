"""Bad input: each kind gets one line on stderr naming the file, row or key, a non-zero
exit, and a workspace left exactly as it was (every file's bytes compared).

The workspace is the `llm` domain (domains/arithmetic, whose seed and evaluation files
are the user's), with a teacher and a judge on a local test server. `flywheel run` is the
real command; its checks refuse these inputs before Prefect, DVC or MLflow start."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import SMALL, free_port, make_project, merge, run
from bench.llm_server import FakeLLM, arithmetic_brain

FLYWHEEL = str(Path(sys.executable).parent / "flywheel")


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.parts
            and "__pycache__" not in p.parts}  # bytecode that Python caches is not workspace data


@pytest.fixture(scope="module")
def server():
    with FakeLLM(arithmetic_brain()) as fake:
        yield fake


@pytest.fixture(scope="module")
def workspace(server, tmp_path_factory):
    model = {"backend": "openai", "base_url": server.url, "concurrency": 2}
    params = merge(SMALL, {
        "domain": {"name": "llm", "path": "domains/arithmetic", "metric": "exact",
                   "llm": {"skills": ["add", "subtract", "multiply"]}},
        "generate": {"teacher": model | {"model": "teacher"}},
        "judge": {"committee": [model | {"model": "judge"}]},
    })
    return make_project(tmp_path_factory.mktemp("bad-input"), params)


def _params(root: Path, edit) -> None:
    cfg = yaml.safe_load((root / "params.yaml").read_text())
    edit(cfg)
    (root / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _seed_parquet(root: Path, df: pd.DataFrame, *, truncate: bool = False) -> None:
    path = root / "domains/arithmetic/seed.parquet"
    df.to_parquet(path)
    if truncate:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _params(root, lambda c: c["domain"]["llm"].update(seed_file="seed.parquet"))


def _seed_lines(root: Path, data: bytes) -> None:
    (root / "domains/arithmetic/seed.jsonl").write_bytes(data)


GOOD = pd.DataFrame({"input": ["what is 2 plus 2", "what is 3 times 3"], "output": ["4", "9"]})
ROW = b'{"input": "what is 1 plus 1", "output": "2"}\n'

# (name, how to break the workspace, what the one line must name)
CASES = [
    ("truncated Parquet", lambda r: _seed_parquet(r, GOOD, truncate=True), "seed.parquet: not a readable Parquet"),
    ("missing column", lambda r: _seed_parquet(r, GOOD.drop(columns="output")), "seed.parquet: row 1: 'output'"),
    ("wrongly typed column", lambda r: _seed_parquet(r, GOOD.assign(input=[1, 2])),
     "seed.parquet: row 1: 'input' must be a non-empty string"),
    ("empty seed set", lambda r: _seed_lines(r, b""), "seed.jsonl: no examples"),
    ("NaN label", lambda r: _seed_parquet(r, GOOD.assign(output=[float("nan"), 9.0])),
     "seed.parquet: row 1: 'output' is missing"),
    ("empty label", lambda r: _seed_lines(r, ROW + b'{"input": "what is 5 plus 5", "output": "  "}\n'),
     "seed.jsonl: line 2: 'output' is missing"),
    ("non-UTF-8 text", lambda r: _seed_lines(r, ROW + b'{"input": "caf\xe9 plus 1", "output": "2"}\n'),
     "seed.jsonl: not UTF-8"),
    ("a row of 10 MB", lambda r: _seed_lines(r, ROW + json.dumps({"input": "x" * 10_000_000, "output": "1"}).encode()),
     "seed.jsonl: line 2: 'input' is 10,000,000 characters"),
    ("not JSON", lambda r: _seed_lines(r, ROW + b'{"input": "what is", \n'), "seed.jsonl: line 2: not valid JSON"),
    ("unknown key in params.yaml", lambda r: _params(r, lambda c: c["train"].update(stepz=3)), "train.stepz"),
    ("wrong type in params.yaml", lambda r: _params(r, lambda c: c["train"].update(steps="many")), "train.steps"),
    ("params.yaml not YAML", lambda r: (r / "params.yaml").write_text("train: [steps: 3\n"), "params.yaml"),
    ("unknown backend", lambda r: _params(r, lambda c: c["judge"]["committee"][0].update(backend="grpc")),
     "judge.committee"),
    ("unknown domain", lambda r: _params(r, lambda c: c["domain"].update(name="vision")), "domain.name"),
    ("unreachable base_url", lambda r: _params(r, lambda c: c["judge"]["committee"][0].update(
        base_url=f"http://127.0.0.1:{free_port()}/v1")), "judge.committee[0].base_url: cannot connect"),
    ("template with an undefined variable",
     lambda r: (r / "domains/arithmetic/judge.jinja").write_text("[user]\nIs {{ label }} right for {{ mystery }}?\n"),
     "judge.jinja: undefined variable 'mystery'"),
    ("a generation that is not in the list", None, "generation 'gen-099' is not in generations"),
]


@pytest.mark.parametrize("name,breaks,names", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line_and_changes_nothing(workspace, name, breaks, names):
    before = snapshot(workspace)
    saved = {p: (workspace / p).read_bytes() for p in before}
    try:
        if breaks is None:  # a stage asked for a generation params.yaml does not have
            proc = run([sys.executable, "-m", "tasks", "compose", "gen-099"], workspace, check=False)
        else:
            breaks(workspace)
            broken = snapshot(workspace)
            proc = run([FLYWHEEL, "run"], workspace, check=False)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2, (name, proc.returncode, proc.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error:"), (name, proc.stderr[-2000:])
        assert names in lines[0], (name, lines[0])
        print(f"BADINPUT {name} => {lines[0]}")
        assert snapshot(workspace) == (before if breaks is None else broken), f"{name}: the workspace changed"
    finally:
        for p in set(snapshot(workspace)) - set(saved):
            (workspace / p).unlink()
        for p, data in saved.items():
            (workspace / p).write_bytes(data)
