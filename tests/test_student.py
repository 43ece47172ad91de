"""The student: real transformers training on CPU, deterministic, and greedy decoding."""

from __future__ import annotations

import random

import torch

from flywheel import student
from flywheel.toolcall import calls as C
from flywheel.toolcall import phrasings as P
from flywheel.toolcall.catalog import SKILLS


def setup(n=300):
    rng = random.Random(5)
    reqs = [P.make_request(rng, P.spec_for_skill(rng, SKILLS[i % len(SKILLS)])) for i in range(n)]
    codec = student.Codec(student.train_tokenizer([r.text + " " + C.render(r.calls) for r in reqs]))
    pairs = [(codec.prompt(r.text), codec.target(C.render(r.calls))) for r in reqs]
    return reqs, codec, pairs


def fresh(codec):
    return student.build_model(codec.tok.get_vocab_size(), n_layer=1, n_embd=32, n_head=2, n_positions=96, seed=1)


def fit(model, codec, pairs, steps=30):
    return student.train(model, pairs, steps=steps, batch_size=16, lr=3e-3, warmup_steps=3, weight_decay=0.0,
                         seed=7, pad=codec.pad)


def test_training_changes_the_weights_and_lowers_the_loss():
    student.set_threads(2)
    _, codec, pairs = setup()
    model = fresh(codec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss_before = student.row_losses(model, pairs, pad=codec.pad, batch_size=64).mean()
    fit(model, codec, pairs, steps=80)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2
    assert student.row_losses(model, pairs, pad=codec.pad, batch_size=64).mean() < 0.6 * loss_before


def test_training_is_bit_identical_for_the_same_seed():
    student.set_threads(2)
    _, codec, pairs = setup(120)
    a, b = fresh(codec), fresh(codec)
    fit(a, codec, pairs, 10)
    fit(b, codec, pairs, 10)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_batched_greedy_equals_one_by_one_and_round_trips_save(tmp_path):
    reqs, codec, pairs = setup(60)
    model = fresh(codec)
    fit(model, codec, pairs, 20)
    prompts = [codec.prompt(r.text) for r in reqs[:20]]
    batched = student.greedy(model, prompts, eos=codec.eos, max_new_tokens=20, batch_size=8)
    single = [student.greedy(model, [p], eos=codec.eos, max_new_tokens=20, batch_size=1)[0] for p in prompts]
    assert [codec.tokens(x) for x in batched] == [codec.tokens(x) for x in single]
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    loaded = student.load(tmp_path)
    again = student.greedy(loaded, prompts, eos=codec.eos, max_new_tokens=20, batch_size=8)
    assert again == batched
