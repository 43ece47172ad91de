"""A student of your own (params.yaml `student:`): a small Llama-architecture model with
a chat template, built and saved inside the test as a user's own model would be, runs
two generations of the flywheel through the Prefect flow (real DVC stages, MLflow on
SQLite), once with LoRA and once fully tuned; then the `llm` domain; then every bad
student configuration is refused in one line with nothing written."""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import SMALL, make_project, merge, run
from flows.lineage import lock_md5s
from flywheel import layout, store, tables

STUDENT = {"model": "models/tiny", "max_length": 256}
BFCL = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple", "live_parallel",
        "live_parallel_multiple", "irrelevance", "live_irrelevance")
LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
HF_SMALL = merge(SMALL, {"train": {"steps": 30, "batch_size": 8, "lr": 0.01, "warmup_steps": 3, "log_every": 5},
                         "prepare": {"eval_rows": 60, "seed_rows": 40, "plan_rows": 80}, "expand": {"budget": 80},
                         "evaluate": {"batch_size": 32, "max_new_tokens": 48,
                                      "bfcl": {"categories": list(BFCL), "per_category": 2, "max_new_tokens": 48}},
                         "probe": {"batch_size": 32},
                         "judge": {"batch_size": 32}})


@pytest.fixture(scope="module", autouse=True)
def _prefect(shared_prefect):
    yield


def requests(n: int, seed: int = 0):
    from flywheel.toolcall import phrasings
    from flywheel.toolcall.phrasings import SKILLS

    rng = random.Random(seed)
    return [phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)])) for i in range(n)]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    """The user's own model: a tiny Llama with a byte-level BPE tokenizer and a chat
    template, briefly tuned (full) to write JSON tool calls, saved with save_pretrained."""
    from bench.hf_models import tiny_llama

    from flywheel import domain
    from flywheel.student import hf
    from flywheel.config import DomainConfig, StudentConfig, TrainConfig
    from flywheel.toolcall import calls

    work = tmp_path_factory.mktemp("base")
    rows = requests(600, seed=7)
    tiny_llama(work / "random", [r.text for r in rows] + [calls.dumps(r.calls) for r in rows])
    dom = domain.get(DomainConfig())
    cfg = StudentConfig(model=str(work / "random"), max_length=256)
    (work / "manifest").mkdir()
    hf.HFStudent.untrained(cfg, dom, work / "manifest")
    st = hf.HFStudent.load(work / "manifest", dom, trainable=True)
    st.fit([r.text for r in rows], [calls.dumps(r.calls) for r in rows],
           train=TrainConfig(steps=120, batch_size=16, lr=0.01, warmup_steps=10, log_every=20), student=cfg, seed=1)
    st.model.save_pretrained(work / "tiny", safe_serialization=True)
    st.tok.save_pretrained(work / "tiny")
    return work / "tiny"


def hf_project(tmp: Path, base: Path, overrides: dict) -> Path:
    project = make_project(tmp, merge(HF_SMALL, overrides))
    shutil.copytree(base, project / "models" / "tiny")
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "init"], project)
    return project


def tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def folder_md5(folder: Path) -> str:
    import hashlib

    digest = hashlib.md5()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            digest.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module", params=["lora", "full"])
def own_run(request, base_model, tmp_path_factory):
    from flows.flywheel import flywheel

    student = merge(STUDENT, {"lora": LORA if request.param == "lora" else {"r": 0}})
    project = hf_project(tmp_path_factory.mktemp(f"hf-{request.param}"), base_model, {"student": student})
    base_before = folder_md5(project / "models" / "tiny")
    results = flywheel(project=str(project))
    return request.param, project, results, base_before


def test_two_generations_train_what_they_should(own_run):
    import pandas as pd

    mode, project, results, base_before = own_run
    assert [r["generation"] for r in results] == ["gen-000", "gen-001"]
    assert folder_md5(project / "models" / "tiny") == base_before  # the base model is read, never written
    base = tensors(project / "models" / "tiny")
    previous = base
    for gen in ("gen-000", "gen-001"):
        folder = project / layout.path(gen, layout.MODEL)
        manifest = json.loads((folder / "flywheel_student.json").read_text())
        weights = tensors(folder)
        if mode == "lora":
            assert manifest["adapter"] and (folder / "adapter_model.safetensors").exists()
            assert not (folder / "model.safetensors").exists()  # only the adapter is saved
            assert weights and all("lora_" in k for k in weights)
            assert any(bool(weights[k].abs().sum() > 0) for k in weights if "lora_B" in k)  # B starts at zero
            if previous is not base:
                assert any(not (weights[k] == previous[k]).all() for k in weights)  # gen-001 moved the adapter
        else:
            assert not manifest["adapter"] and (folder / "model.safetensors").exists()
            changed = [k for k in weights if k in previous and not (weights[k] == previous[k]).all()]
            assert len(changed) >= 0.9 * len(weights)  # full tuning moves (nearly) every tensor
        previous = weights
        assert len(pd.read_csv(project / layout.path(gen, layout.TRAIN_LOSS))) >= 2  # the plotted curve
        assert (folder / "chat_template.jinja").exists() or "chat_template" in \
            json.loads((folder / "tokenizer_config.json").read_text())


def training_loss_fell(project: Path) -> None:
    """The answer-token loss on each generation's training rows (all of them: the first
    rows alone are the seed's, which a later generation may trade for its own), under the
    checkpoint it started from and under the one it wrote (minibatch losses are too noisy
    to compare)."""
    import os

    from flywheel import domain
    from flywheel.config import load
    from flywheel.student.hf import HFStudent

    cfg = load(project / "params.yaml")
    dom = domain.get(cfg.domain, project)
    cwd = os.getcwd()
    os.chdir(project)  # the manifest names the base by its path in the project
    try:
        for gen in ("gen-000", "gen-001"):
            rows = store.read_table(layout.path(gen, layout.TRAIN), tables.TRAINSET)
            losses = [HFStudent.load(layout.path(g, layout.MODEL), dom).label_losses(
                list(rows["request"]), list(rows["label"]), batch_size=32).mean()
                for g in (cfg.generation(gen).prev, gen)]
            assert losses[1] < losses[0], (gen, losses)
    finally:
        os.chdir(cwd)


def test_each_generation_lowered_the_loss_on_its_training_rows(own_run):
    training_loss_fell(own_run[1])


def test_evaluation_parses_the_chat_answers(own_run):
    """evaluate's outputs are the checkpoint's raw answers through the strict parser: a
    readable answer becomes the call list the scorer reads, anything else "" (wrong)."""
    import os

    from flywheel import domain
    from flywheel.config import load
    from flywheel.student.hf import HFStudent
    from flywheel.toolcall import calls

    mode, project, _, _ = own_run
    cfg = load(project / "params.yaml")
    dom = domain.get(cfg.domain)
    preds = store.read_table(project / layout.path("gen-001", layout.PREDICTIONS), tables.PREDICTIONS)
    evals = store.read_table(project / layout.EVAL, tables.EVALSET)
    assert len(preds) == len(evals)
    cwd = os.getcwd()
    os.chdir(project)
    try:
        student = HFStudent.load(layout.path("gen-001", layout.MODEL), dom)
        student.read = lambda text: text  # the raw assistant text
        raw = student.answer(list(evals["request"].head(16)), batch_size=16, max_new_tokens=cfg.evaluate.max_new_tokens)
        # probe.samples: sampled answers through the same path, reproducible per seed, not the greedy ones
        head = list(evals["request"].head(16))
        cold = student.answer(head, batch_size=16, max_new_tokens=16)
        hot = [student.answer(head, batch_size=16, max_new_tokens=16, temperature=2.0, seed=k) for k in (1, 1, 2)]
    finally:
        os.chdir(cwd)
    assert hot[0] == hot[1] and hot[0] != hot[2] and hot[0] != cold
    assert list(preds["output"].head(16)) == [dom.from_chat(r) for r in raw]
    readable = [o for o in preds["output"] if o]
    assert all(calls.parse(o.split(), dom.toolset) is not None for o in readable)
    assert not preds.loc[preds["output"] == "", "correct"].any()
    assert list(preds["correct"]) == dom.score(list(evals["label"]), list(preds["output"]))
    if mode == "full":  # the fully tuned tiny model writes mostly well-formed calls
        assert len(readable) >= 0.5 * len(preds), preds["output"].head(10).tolist()


def test_bfcl_is_scored_by_its_checker_in_every_generation(own_run):
    """evaluate.bfcl on: each generation's student answers 2 questions of each of BFCL's
    single-turn categories; the scores are in metrics.json, MLflow and `dvc plots`."""
    import mlflow
    import pandas as pd

    from flows.lineage import setup_mlflow
    from flywheel.config import load

    mode, project, results, _ = own_run
    cfg = load(project / "params.yaml")
    setup_mlflow(cfg, project)
    client = mlflow.MlflowClient()
    for r in results:
        metrics = store.read_json(project / layout.path(r["generation"], layout.METRICS))
        bfcl = metrics["bfcl"]
        assert set(bfcl["per_category"]) == set(BFCL) and bfcl["questions"] == 2 * len(BFCL)
        assert all(0 <= v <= 1 for v in bfcl["per_category"].values()) and {"non_live", "live"} <= set(bfcl)
        plot = pd.read_csv(project / layout.path(r["generation"], layout.BFCL_ACCURACY))
        assert dict(zip(plot["category"], plot["accuracy"])) == bfcl["per_category"]
        version = client.get_model_version(cfg.lineage.registered_model, r["version"])
        logged = client.get_run(version.run_id).data.metrics
        assert logged["bfcl.simple_python"] == bfcl["per_category"]["simple_python"]
        assert logged["bfcl.non_live"] == bfcl["non_live"]
    shown = run([sys.executable, "-m", "dvc", "plots", "show", "--json"], project).stdout
    assert "gen-001/bfcl_accuracy.csv" in shown


def test_the_registered_model_loads_and_answers_as_evaluate_did(own_run):
    import mlflow
    import pandas as pd

    from flows.lineage import setup_mlflow
    from flywheel import domain
    from flywheel.config import load

    mode, project, results, _ = own_run
    cfg = load(project / "params.yaml")
    setup_mlflow(cfg, project)
    version = results[-1]["version"]
    tags = mlflow.MlflowClient().get_model_version(cfg.lineage.registered_model, version).tags
    assert tags["student.base"] == "models/tiny" and tags["student.adapter"] == str(mode == "lora").lower()
    assert tags["trained_from"] == results[0]["version"]  # the lineage walk, as for the built-in student
    assert tags["student.base_md5"] == next(d["md5"] for d in yaml.safe_load((project / "dvc.lock").read_text())
                                            ["stages"]["train@gen-001"]["deps"] if d["path"] == "models")
    if mode == "lora":  # the base is held once, named by its digest, not copied into each version
        client = mlflow.MlflowClient()
        configs = []
        for r in results:
            v = client.get_model_version(cfg.lineage.registered_model, r["version"])
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{v.run_id}/student"))
            assert not (local / "artifacts" / "base").exists()
            configs.append(yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]["config"])
        assert configs[0]["base_uri"] == configs[1]["base_uri"]
        assert configs[0]["base_md5"] == tags["student.base_md5"]
        bases = client.search_runs([client.get_run(v.run_id).info.experiment_id],
                                   filter_string=f"tags.`flywheel.base_md5` = '{tags['student.base_md5']}'")
        assert len(bases) == 1
    model = mlflow.pyfunc.load_model(f"models:/{cfg.lineage.registered_model}/{version}")
    evals = store.read_table(project / layout.EVAL, tables.EVALSET).head(6)
    preds = store.read_table(project / layout.path("gen-001", layout.PREDICTIONS), tables.PREDICTIONS).head(6)
    dom = domain.get(cfg.domain)
    out = model.predict(pd.DataFrame({"request": list(evals["request"])}))
    assert list(out) == [dom.deployed_answer(o) for o in preds["output"]]


def test_mlflow_models_serve_answers_as_evaluate_did(own_run):
    """`mlflow models serve` on the registered version (LoRA: the adapter with its base
    as a second artifact) answers over HTTP what the stage `evaluate` predicted."""
    import os
    import subprocess
    import time
    import urllib.request

    from conftest import free_port
    from flows.lineage import tracking_uri
    from flywheel import domain
    from flywheel.config import load

    _, project, results, _ = own_run
    cfg = load(project / "params.yaml")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m",
         f"models:/{cfg.lineage.registered_model}/{results[-1]['version']}", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=project, env=dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri(cfg, project),  # uvicorn from the venv
                                 PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"mlflow models serve exited: {server.stderr.read()[-2000:]}"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow models serve did not answer /ping in 180 s"
                time.sleep(1)
        evals = store.read_table(project / layout.EVAL, tables.EVALSET).head(4)
        preds = store.read_table(project / layout.path("gen-001", layout.PREDICTIONS), tables.PREDICTIONS).head(4)
        body = json.dumps({"dataframe_records": [{"request": r} for r in evals["request"]]}).encode()
        reply = urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}),
            timeout=120)
        dom = domain.get(cfg.domain)
        assert json.loads(reply.read())["predictions"] == [dom.deployed_answer(o) for o in preds["output"]]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_rerun_gives_identical_checkpoints(own_run):
    _, project, _, _ = own_run
    before = lock_md5s(project)
    for gen in ("gen-000", "gen-001"):
        run([sys.executable, "-m", "dvc", "repro", "-f", "-s", f"train@{gen}"], project)
    after = lock_md5s(project)
    for gen in ("gen-000", "gen-001"):
        key = str(layout.path(gen, layout.MODEL))
        assert after[key] == before[key]


SAVE_ADAPTER = """
import sys
from pathlib import Path
from flywheel import domain
from flywheel.student import hf
from flywheel.config import DomainConfig, StudentConfig
base, manifest, out = map(Path, sys.argv[1:])
cfg = StudentConfig(model=str(base), max_length=256, lora={"r": 4, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]})
dom = domain.get(DomainConfig())
hf.HFStudent.untrained(cfg, dom, manifest)
hf.HFStudent.load(manifest, dom, trainable=True).save(out)
"""


def test_an_adapter_is_saved_byte_for_byte_whatever_the_hash_seed(tmp_path):
    """peft holds target_modules as a set; each process orders a set of strings by its own
    hash seed, so the saved adapter_config.json must not depend on it."""
    import os
    import subprocess

    from bench.hf_models import tiny_llama

    texts = [r.text for r in requests(50)]
    tiny_llama(tmp_path / "base", texts)
    configs = set()
    for seed in ("1", "2", "3", "4"):
        out = tmp_path / f"out{seed}"
        subprocess.run([sys.executable, "-c", SAVE_ADAPTER, str(tmp_path / "base"), str(tmp_path / f"m{seed}"), str(out)],
                       env=dict(os.environ, PYTHONHASHSEED=seed), check=True, capture_output=True,
                       cwd=Path(__file__).parents[1])
        configs.add((out / "adapter_config.json").read_bytes())
        assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    assert len(configs) == 1


def test_the_llm_domain_trains_an_own_student_with_lora(base_model, tmp_path_factory):
    """domains/arithmetic: the user's input through the chat template, the label as the
    assistant turn, two generations with LoRA, the adapter moving, answers as text."""
    from bench.llm_server import FakeLLM, arithmetic_brain
    from test_llm_flow import llm_params

    with FakeLLM(arithmetic_brain(wrong_every=5)) as server:
        params = merge(llm_params(server.url), {"student": merge(STUDENT, {"lora": LORA}),
                                                "train": {"steps": 20, "batch_size": 8, "lr": 0.01}})
        params["judge"]["calibration"] = {"gold": "", "min_precision": 0.0, "min_recall": 0.0}
        params["domain"]["metric"] = "exact"
        import os

        os.environ.setdefault("FLYWHEEL_TEST_LLM_KEY", "sk-test")
        project = hf_project(tmp_path_factory.mktemp("hf-llm"), base_model, params)
        run([sys.executable, "-m", "dvc", "repro"], project)
    for gen in ("gen-000", "gen-001"):
        folder = project / layout.path(gen, layout.MODEL)
        assert json.loads((folder / "flywheel_student.json").read_text())["tools"] is None  # no tools for text
        assert (folder / "adapter_model.safetensors").exists()
    training_loss_fell(project)
    preds = store.read_table(project / layout.path("gen-001", layout.PREDICTIONS), tables.PREDICTIONS)
    assert len(preds) > 0 and preds["output"].map(lambda o: isinstance(o, str)).all()
    a, b = tensors(project / layout.path("gen-000", layout.MODEL)), tensors(project / layout.path("gen-001",
                                                                                                 layout.MODEL))
    assert any(not (a[k] == b[k]).all() for k in a)


# --- refusals: one line, exit status 2, nothing written ------------------------------

def _bad_cases(base: Path, tmp: Path) -> dict:
    from bench.hf_models import tiny_llama

    no_template = tiny_llama(tmp / "no-template", ["hello world"], chat_template=None)
    pickled = tmp / "pickled"
    shutil.copytree(base, pickled)
    for f in pickled.glob("*.safetensors"):
        f.unlink()
    return {
        "missing path": ({"model": "models/nowhere"}, "no such folder"),
        "no safetensors": ({"model": "models/pickled"}, "no .safetensors weights"),
        "unknown LoRA target": ({"lora": {"r": 4, "target_modules": ["q_proj", "wq"]}},
                                "'wq' is not a module of"),
        "no chat template": ({"model": "models/no-template"}, "has no chat template"),
        "device not there": ({"device": "cuda"}, "'cuda' is not available"),
        "hub id without revision": ({"model": "someone/some-model"}, "needs student.revision"),
    }, {"pickled": pickled, "no-template": no_template}


def test_bad_student_configurations_are_refused_in_one_line(base_model, tmp_path, capsys):
    """By `flywheel check` (in this process: the same code as the command, without a
    torch import per case) and by the stage `dvc repro` runs (a process of its own)."""
    import torch

    from flows.cli import main as cli

    project = make_project(tmp_path / "p", HF_SMALL, git=False)
    shutil.copytree(base_model, project / "models" / "tiny")
    cases, extra = _bad_cases(base_model, tmp_path)
    for name, folder in extra.items():
        shutil.copytree(folder, project / "models" / name)
    params = yaml.safe_load((project / "params.yaml").read_text())
    for name, (student, message) in cases.items():
        if name == "device not there" and torch.cuda.is_available():
            continue
        cfg = merge(params, {"student": merge(STUDENT, student)})
        (project / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        before = sorted(p.relative_to(project).as_posix() for p in (project / "data").rglob("*"))
        capsys.readouterr()
        code = cli(["--project", str(project), "check", "--offline"])
        checked = capsys.readouterr().err
        proc = run([sys.executable, "-m", "tasks", "prepare"], project, check=False)
        for what, returncode, err in (("check", code, checked), ("prepare", proc.returncode, proc.stderr)):
            lines = [line for line in err.strip().splitlines() if line.strip()]
            assert returncode == 2, (name, what, err)
            assert len(lines) == 1 and message in lines[0], (name, what, err)
        after = sorted(p.relative_to(project).as_posix() for p in (project / "data").rglob("*"))
        assert after == before, name


def test_peft_refuses_a_module_it_cannot_wrap(base_model):
    """A target module that exists but is no layer LoRA can adapt (a norm) is refused
    by peft itself, on a copy of the model on the meta device (no weights loaded)."""
    from flywheel import domain
    from flywheel.student import hf
    from flywheel.config import DomainConfig, StudentConfig

    cfg = StudentConfig(model=str(base_model), lora={"r": 4, "target_modules": ["input_layernorm"]})
    with pytest.raises(hf.StudentError, match="peft cannot wrap"):
        hf.check_base(cfg, domain.get(DomainConfig()))


def test_the_shared_prefix_and_the_label_check_change_no_answer(base_model, tmp_path, monkeypatch):
    """The prompt prefix every row shares, run once and held once for the batch
    (flywheel/student/prefix_attention.py), gives the answers and losses of the rows run
    in full; rows answered from their `expected` label (teacher-forced, without
    decoding) are the answers decoding gives, and training over the shared prefix has the
    loss and gradients of the full rows."""
    import numpy as np
    import torch

    from flywheel import domain
    from flywheel.config import DomainConfig, StudentConfig
    from flywheel.student import hf
    from flywheel.student.batches import pad_batch
    from flywheel.toolcall import calls

    dom = domain.get(DomainConfig())
    hf.HFStudent.untrained(StudentConfig(model=str(base_model), max_length=256), dom, tmp_path)
    rows = requests(24, seed=3)
    texts, labels = [r.text for r in rows], [calls.dumps(r.calls) for r in rows]
    st = hf.HFStudent.load(tmp_path, dom)
    assert hf.shared_prefix([st.prompt_ids(t) for t in texts]) >= hf.PREFIX_MIN  # the catalog's tools: a shared prefix
    assert st._shares_prefix  # a Llama takes the attention that reads one copy of the prefix for the batch
    shared = st.answer(texts, batch_size=8, max_new_tokens=48, raw=True)
    losses = st.label_losses(texts, labels, batch_size=8)
    own = [st.read(a) for a in shared]

    def label_of(raw: str, label: str) -> str:  # what it wrote, as a label, where it wrote calls
        try:
            return calls.dumps(calls.loads(calls.canonical(json.loads(raw))))
        except (ValueError, TypeError):
            return label

    written = [label_of(raw, label) for raw, label in zip(shared, labels)]
    checked = hf.HFStudent.load(tmp_path, dom)
    decoded: list[int] = []
    generate = checked.model.generate
    checked.model.generate = lambda **kw: decoded.append(kw["input_ids"].shape[0]) or generate(**kw)
    assert checked.answer(texts, batch_size=8, max_new_tokens=48, expected=written) == own
    _, greedy = checked._forced([st.prompt_ids(t) for t in texts], [st.pair(t, label)[1] for t, label in
                                                                   zip(texts, written)], 8)
    assert greedy.any() and sum(decoded) == len(texts) - greedy.sum()  # rows it writes token for token: not decoded
    monkeypatch.setattr(hf, "PREFIX_MIN", 10**9)  # every row in full, no shared prefix
    full = hf.HFStudent.load(tmp_path, dom)
    assert full.answer(texts, batch_size=8, max_new_tokens=48, raw=True) == shared
    assert np.allclose(full.label_losses(texts, labels, batch_size=8), losses, atol=1e-4)
    monkeypatch.undo()
    model = hf.HFStudent.load(tmp_path, dom, trainable=True, seed=0).model
    pairs = [st.pair(t, label) for t, label in zip(texts[:8], labels[:8])]
    grads = []
    shared_batch = hf.collate(pairs, st.tok.pad_token_id)
    assert "prefix_ids" in shared_batch
    for batch, grad in ((shared_batch, True), (shared_batch, False),
                        (dict(zip(("input_ids", "labels", "attention_mask"), pad_batch(pairs, st.tok.pad_token_id))),
                         None)):
        batch = dict(batch)
        prefix = batch.pop("prefix_ids", None)
        cache = None if prefix is None else hf.prefix_cache(model, prefix, len(pairs), grad)
        loss = model(**batch, past_key_values=cache).loss
        loss.backward()
        grads.append((float(loss), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
        model.zero_grad()
    exact, detached, full = grads
    assert abs(exact[0] - full[0]) < 1e-5 and abs(detached[0] - full[0]) < 1e-5  # the same loss either way
    assert torch.allclose(exact[1], full[1], rtol=1e-3, atol=1e-6)  # the rows' gradient in full
    # without the prefix's path: another gradient, though one that still points the same way
    assert not torch.allclose(detached[1], full[1], rtol=1e-3, atol=1e-6)
    assert float(torch.nn.functional.cosine_similarity(detached[1], full[1], dim=0)) > 0.5
