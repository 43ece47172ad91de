"""What the near-duplicate check (flywheel/decontam.py) catches and what it wrongly refuses,
measured on the default domain's evaluation requests (the generator's splits and the
hand-written `user` split):

- true paraphrases: each evaluation request re-typed four ways (case, end punctuation,
  a greeting or a "please", contractions expanded or made) must be caught;
- distinct requests: each evaluation request with one argument value replaced (another
  city, title, text or number) is a different request and must not be refused, and
  neither must fresh requests from the generator.

    python -m experiments.decontamination [--threshold 0.8]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys

from bench import ROOT


def _paraphrases(rng: random.Random, text: str) -> list[str]:
    base = text.rstrip("?!. ")
    return [text.upper(), text.lower().rstrip("?!.") + rng.choice(["?", "!", "", "."]),
            rng.choice(["Hey, ", "Hi! ", "Please ", "Ok so "]) + base[0].lower() + base[1:] + rng.choice(
                [" please", " thanks!", "", " pls"]),
            re.sub(r"\bwhat is\b", "what's", re.sub(r"\bwhat's\b", "what is", text, flags=re.I), flags=re.I)]


def _typo(text: str) -> str:
    """The request with two letters of its longest word swapped (a typo in a content word)."""
    word = max(text.split(), key=len)
    return text.replace(word, word[0] + word[2] + word[1] + word[3:], 1)


def _one_value_changed(rng: random.Random, text: str, label: list, pools) -> str | None:
    for call in label:
        for value in call["arguments"].values():
            if isinstance(value, str) and len(value) > 2 and value.lower() in text.lower() and not value[:1].isdigit():
                other = rng.choice(pools)
                return re.sub(re.escape(value), other, text, count=1, flags=re.I)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and str(int(value)) in text:
                return text.replace(str(int(value)), str(int(value) + 7), 1)
    return None


def measure(threshold: float, n_fresh: int = 5000) -> dict:
    sys.path.insert(0, str(ROOT))
    from flywheel.decontam import NearDuplicates
    from flywheel.toolcall import calls
    from flywheel.toolcall import phrasings
    from flywheel.toolcall import sets
    from flywheel.toolcall.phrasings import SKILLS

    rng = random.Random(0)
    drawn = sets.eval_set(rng, 600, {"seen": 0.4, "new_values": 0.3, "new_phrasing": 0.3})
    user = sets.user_set(ROOT / "domains" / "toolcall" / "user.jsonl", phrasings.CATALOG)
    evals = list(drawn["request"]) + list(user["request"])
    labels = [calls.loads(x) for x in list(drawn["label"]) + list(user["label"])]
    near = NearDuplicates(evals, threshold=threshold)
    para = [(i, p) for i, t in enumerate(evals) for p in _paraphrases(rng, t) if p != t]
    caught = sum(near.match(p) is not None for _, p in para)
    typos = [_typo(t) for t in evals if max(t.split(), key=len).isalpha() and len(max(t.split(), key=len)) > 4]
    typos_caught = sum(near.match(t) is not None for t in typos)
    pools = phrasings.values("city", "heldout") + phrasings.values("title", "heldout") + phrasings.values("text", "heldout")
    changed = [c for t, lab in zip(evals, labels) if (c := _one_value_changed(rng, t, lab, pools))]
    refused_changed = [c for c in changed if near.match(c) is not None]
    fresh = [phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)])).text for i in range(n_fresh)]
    refused_fresh = [f for f in fresh if near.match(f) is not None]
    return {"threshold": threshold, "evaluation_requests": len(evals),
            "paraphrases": len(para), "paraphrases_caught": caught, "catch_rate": round(caught / len(para), 4),
            "with_a_typo": len(typos), "with_a_typo_caught": typos_caught,
            "one_value_changed": len(changed), "one_value_changed_refused": len(refused_changed),
            "fresh_generated": n_fresh, "fresh_refused": len(refused_fresh),
            "examples_refused": (refused_changed + refused_fresh)[:8]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", type=float, nargs="*", default=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    for t in ap.parse_args().threshold:
        print(json.dumps(measure(t), ensure_ascii=False))


if __name__ == "__main__":
    main()
