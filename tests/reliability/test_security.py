"""Security: generated text stays data, weights load only from safetensors, evaluation
rows never reach training, and the servers the project starts listen on localhost.
(The API-key canary, searched in every file a run writes and in Prefect's logs and
artifacts, is tests/test_llm_flow.py::test_the_api_key_is_written_nowhere; the sockets
`flywheel ui` listens on are checked in tests/test_schedule.py.)"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, run
from flywheel import layout, llm_domain, store, tables
from flywheel.student import builtin
from flywheel.backends import templates
from flywheel.backends.committee import JUDGE_VARIABLES, parse_verdict

CODE = [p for d in ("flywheel", "tasks", "flows", "bench") for p in (ROOT / d).rglob("*.py")]
INJECTION = "{{ 7 * 7 }}{% for x in range(3) %}x{% endfor %} __import__('os').system('touch /tmp/pwned') $(id)"


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f"{getattr(f.value, 'id', '?')}.{f.attr}" \
                if isinstance(f, ast.Attribute) else "?"
            yield name, node


def test_no_code_path_runs_text_as_code():
    """No eval/exec/compile, no shell, no pickle, no unsafe YAML, no template built from a
    string other than a template file's own text, anywhere in the project's code."""
    found = []
    for path in CODE:
        for name, node in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{node.lineno} {name}"
            if name in ("eval", "exec", "compile", "os.system", "os.popen", "pickle.load", "pickle.loads",
                        "torch.load", "yaml.load", "yaml.unsafe_load", "jinja2.Template"):
                found.append(where)
            if any(k.arg == "shell" and getattr(k.value, "value", False) for k in node.keywords):
                found.append(where + " shell=True")
            if name.endswith(".from_string") and path != ROOT / "flywheel/backends/templates.py":
                found.append(where)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "jinja2" and any(
                    a.name == "Template" for a in node.names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} from jinja2 import Template")
    assert found == []


def test_model_output_is_rendered_as_a_value_never_as_template_source():
    template = templates.load(ROOT / "domains/arithmetic/judge.jinja")
    values = {k: INJECTION if k in ("request", "label", "student_output") else "" for k in JUDGE_VARIABLES}
    text = "\n".join(content for _, content in template.render(**values))
    assert "{{ 7 * 7 }}" in text and "49" not in text and "xxx" not in text
    # ... and parsers keep it as inert text in the label
    request, label = llm_domain.parse_teacher("exact")(json.dumps({"input": "q", "output": INJECTION}))
    assert label == " ".join(INJECTION.split()) and not Path("/tmp/pwned").exists()
    assert parse_verdict('{"verdict": "label_wrong", "corrected_label": "{{ 7 * 7 }}"}').corrected_label == "{{ 7 * 7 }}"


def test_weights_load_only_from_safetensors(tmp_path):
    """A checkpoint whose weights are a pickle (pytorch_model.bin) is refused, never unpickled."""
    import shutil

    import torch

    model = builtin.build_model(50, n_layer=1, n_embd=16, n_head=2, n_positions=16, seed=0, eos_token_id=3,
                                pad_token_id=0)
    model.save(tmp_path / "safe")
    assert "model.safetensors" in {p.name for p in (tmp_path / "safe").iterdir()}
    builtin.load_model(tmp_path / "safe")
    (tmp_path / "pickled").mkdir()
    shutil.copy(tmp_path / "safe" / "config.json", tmp_path / "pickled" / "config.json")
    torch.save(model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        builtin.load_model(tmp_path / "pickled")


def test_every_checkpoint_the_pipeline_writes_is_safetensors(small_project):
    models = list((small_project / "data").glob("*/model"))
    assert len(models) >= 3
    for d in models:
        names = {p.name for p in d.iterdir()}
        assert "model.safetensors" in names and not names & {"pytorch_model.bin", "model.bin"}, (d, names)


def test_planted_evaluation_rows_are_refused_at_compose(small_project, tmp_path):
    """Evaluation requests planted among the judged rows (also with other case and
    spacing) stop compose with one line; its previous outputs stay as they were."""
    verdicts_path = small_project / layout.path("gen-000", layout.VERDICTS)
    original = verdicts_path.read_bytes()
    train_path = small_project / layout.path("gen-000", layout.TRAIN)
    train_before = train_path.read_bytes()
    evals = store.read_table(small_project / layout.EVAL, tables.EVALSET)
    verdicts = store.read_table(verdicts_path, tables.VERDICTS)
    kept = verdicts[verdicts["final_label"].notna()].head(3).copy()
    kept["request"] = ["  " + evals["request"].iloc[0].upper(), evals["request"].iloc[1].replace(" ", "   "),
                       evals["request"].iloc[2]]
    try:
        store.write_table(pd.concat([verdicts, kept], ignore_index=True), verdicts_path, tables.VERDICTS)
        proc = run([sys.executable, "-m", "tasks", "compose", "gen-000"], small_project, check=False)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "3 training request(s) equal or nearly duplicate evaluation requests" in lines[0]
        assert train_path.read_bytes() == train_before
    finally:
        verdicts_path.write_bytes(original)
