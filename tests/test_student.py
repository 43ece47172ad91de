"""The student: real transformers training on CPU, deterministic, greedy decoding, and a
checkpoint folder that describes itself (config, weights, tokenizer)."""

from __future__ import annotations

import json
import random

import torch

from flywheel import student
from flywheel.student import builtin
from flywheel.student.batches import pad_batch
from flywheel.student.builtin import Student
from flywheel.toolcall import calls
from flywheel.toolcall import phrasings
from flywheel.toolcall.phrasings import SKILLS
from flywheel.vocab import EOS, PAD, SEP, UNK, train_tokenizer


def setup(n=300):
    rng = random.Random(5)
    reqs = [phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)])) for i in range(n)]
    tok = train_tokenizer([r.text + " " + calls.render(r.calls) for r in reqs])
    return reqs, tok, [r.text for r in reqs], [calls.render(r.calls) for r in reqs]


def fresh(tok) -> Student:
    return Student.build(tok, n_layer=1, n_embd=32, n_head=2, n_positions=96, seed=1)


def fit(st: Student, requests, targets, steps=30):
    return builtin.train_loop(st.model, st.pairs(requests, targets), steps=steps, batch_size=16, lr=3e-3, warmup_steps=3,
                         weight_decay=0.0, seed=7, pad=st.codec.pad)


def test_training_changes_the_weights_and_lowers_the_loss():
    builtin.set_threads(2)
    _, tok, requests, targets = setup()
    st = fresh(tok)
    before = {k: v.clone() for k, v in st.model.state_dict().items()}
    loss_before = builtin.label_losses(st.model, st.pairs(requests, targets), pad=st.codec.pad, batch_size=64).mean()
    fit(st, requests, targets, steps=80)
    changed = [k for k, v in st.model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2
    assert builtin.label_losses(st.model, st.pairs(requests, targets), pad=st.codec.pad, batch_size=64).mean() < 0.6 * loss_before


def test_training_is_bit_identical_for_the_same_seed():
    builtin.set_threads(2)
    _, tok, requests, targets = setup(120)
    a, b = fresh(tok), fresh(tok)
    fit(a, requests, targets, 10)
    fit(b, requests, targets, 10)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_batched_greedy_equals_one_by_one():
    _, tok, requests, targets = setup(60)
    st = fresh(tok)
    fit(st, requests, targets, 20)
    prompts = [st.codec.prompt(r) for r in requests[:20]]
    batched = builtin.greedy(st.model, prompts, eos=st.codec.eos, max_new_tokens=20, batch_size=8)
    single = [builtin.greedy(st.model, [p], eos=st.codec.eos, max_new_tokens=20, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_sampled_answers_are_reproducible_per_seed_and_not_greedy():
    """probe.samples draws answers at a temperature: the same seed gives the same answers,
    and at a high temperature they depart from the greedy ones."""
    _, tok, requests, targets = setup(60)
    st = fresh(tok)
    fit(st, requests, targets, 20)
    greedy = st.answer(requests[:30], batch_size=8)
    hot = st.answer(requests[:30], batch_size=8, temperature=2.0, seed=1)
    assert hot == st.answer(requests[:30], batch_size=8, temperature=2.0, seed=1)
    assert hot != st.answer(requests[:30], batch_size=8, temperature=2.0, seed=2)
    assert hot != greedy


def test_the_checkpoint_folder_describes_itself(tmp_path):
    """One folder holds config, safetensors weights and tokenizer; `Student.load` alone brings
    back a student that answers exactly as the saved one did."""
    _, tok, requests, targets = setup(60)
    st = fresh(tok)
    fit(st, requests, targets, 20)
    st.save(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    loaded = Student.load(tmp_path)
    assert loaded.answer(requests[:20], batch_size=8) == st.answer(requests[:20], batch_size=8)
    special = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert {special[k] for k in ("pad_token", "eos_token", "sep_token", "unk_token")} == {PAD, EOS, SEP, UNK}


def test_special_token_ids_come_from_the_tokenizer():
    """A tokenizer whose special tokens sit at other ids gives a model with those ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["a b c"], trainer=trainers.WordLevelTrainer(special_tokens=[UNK, EOS, SEP, PAD]))
    st = fresh(tok)
    assert (st.codec.eos, st.codec.pad, st.codec.sep) == (1, 3, 2)
    assert (st.model.config.eos_token_id, st.model.config.pad_token_id) == (1, 3)


def test_the_checkpoint_is_a_hugging_face_gpt2(tmp_path):
    """The built-in network is plain torch (flywheel/student/gpt2.py), but its folder is a GPT-2
    checkpoint: transformers loads weights and tokenizer and computes the same logits."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    _, tok, requests, targets = setup(60)
    st = fresh(tok)
    fit(st, requests, targets, 20)
    st.save(tmp_path)
    hf = GPT2LMHeadModel.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    hf_tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf_tok.convert_tokens_to_ids([PAD, EOS, SEP]) == [st.codec.pad, st.codec.eos, st.codec.sep]
    ids, _, mask = pad_batch(st.pairs(requests[:8], targets[:8]), st.codec.pad)
    with torch.no_grad():
        ours = st.model.head(st.model(ids, mask)[0])
        theirs = hf(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours[real], torch.zeros_like(ours[real]))


def test_row_losses_in_a_batch_equal_each_row_alone():
    """label_losses pads and flattens a batch; each row's mean token loss is what that
    row gives on its own."""
    _, tok, requests, targets = setup(40)
    st = fresh(tok)
    fit(st, requests, targets, 10)
    pairs = st.pairs(requests, targets)
    mean = builtin.label_losses(st.model, pairs, pad=st.codec.pad, batch_size=16)
    alone = [builtin.label_losses(st.model, [p], pad=st.codec.pad, batch_size=1) for p in pairs]
    assert len(set(mean.round(4))) > 10  # rows differ
    for i, m in enumerate(alone):
        assert abs(mean[i] - m[0]) < 1e-5, i


def test_grad_accum_averages_that_many_batches_a_step():
    """With `grad_accum` 2 a step takes the next two batches of the same seeded order: at
    learning rate 0 (the weights never move), its loss is the mean of two plain steps'."""
    _, tok, requests, targets = setup(120)
    st = fresh(tok)
    pairs = st.pairs(requests, targets)

    def losses(steps, accum):
        return [loss for _, loss in builtin.train_loop(fresh(tok).model, pairs, steps=steps, batch_size=16, lr=0.0,
                                                  warmup_steps=0, weight_decay=0.0, seed=7, pad=st.codec.pad,
                                                  grad_accum=accum)]

    plain, accumulated = losses(4, 1), losses(2, 2)
    assert len(set(plain)) == 4  # the batches differ
    for k, loss in enumerate(accumulated):
        assert abs(loss - (plain[2 * k] + plain[2 * k + 1]) / 2) < 1e-6, k


def test_the_builtin_student_refuses_what_it_would_ignore():
    from flywheel.config import StudentConfig

    for change, message in (({"lora": {"r": 8}}, "student.lora.r: the built-in student is trained in full"),
                            ({"device": "cuda"}, "student.device: the built-in student runs on the CPU"),
                            ({"dtype": "bfloat16"}, "student.dtype: the built-in student computes in float32")):
        cfg = StudentConfig(**change)
        assert student.kind_for(cfg) is Student
        try:
            Student.check(cfg, None)
        except student.StudentError as e:
            assert str(e).startswith(message), e
        else:
            raise AssertionError(f"{change} was accepted")
    Student.check(StudentConfig(device="cpu", dtype="float32", grad_accum=4), None)
