"""The `toolcall` domain's fixed sets, made once by `prepare`: the evaluation set, the
seed set and the texts the student's tokenizer learns its pieces from.

The evaluation set has four splits. Three are drawn from the generator and measure kinds
of generalisation (`prepare.eval_mix`): `seen` (generator phrasings and values, new
combinations), `new_values` (generator phrasings, held-out cities, names, titles and
reminder texts) and `new_phrasing` (carrier phrasings never generated). The fourth,
`user`, is read from `domain.toolcall.user_file`: requests written by hand, the way people type,
independently of the generator. The seed set uses the `seed` phrasings and training
values only, and never repeats an evaluation request.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

from flywheel import layout, store, tables
from flywheel.decontam import EvalRequests, request_key
from flywheel.toolcall import calls, records
from flywheel.toolcall import phrasings
from flywheel.toolcall.catalog import BOOL, DATE, ENUM, Catalog, scalars
from flywheel.toolcall.phrasings import FUNCTIONS, PHENOMENA, SKILLS
from flywheel.toolcall.verifier import check

EVAL_KINDS = {  # kind -> (phrasing sets, value split)
    "seen": (("seed", "gen"), "train"),
    "new_values": (("seed", "gen"), "heldout"),
    "new_phrasing": (("heldout",), "train"),
}


def _draw(rng: random.Random, n: int, phrasing_sets, value_split, distinct_from: set[str],
          evals: EvalRequests | None = None) -> list[phrasings.Request]:
    """n distinct requests, skills spread uniformly, none equal (decontam.request_key) to one
    in `distinct_from`, and none equal or nearly the same as one of `evals`."""
    out: list[phrasings.Request] = []
    seen = {request_key(t) for t in distinct_from}  # distinct after case and spacing
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n:
            raise store.DataError(f"params.yaml: prepare: cannot draw {n} distinct requests; lower the count")
        req = phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[tries % len(SKILLS)]),
                                     phrasing_sets=phrasing_sets, value_split=value_split)
        key = request_key(req.text)
        if key not in seen and (evals is None or evals.match(req.text) is None):
            seen.add(key)
            out.append(req)
    return out


def eval_set(rng: random.Random, rows_total: int, mix: dict[str, float]) -> pd.DataFrame:
    rows = []
    for kind, share in sorted(mix.items()):
        sets, values = EVAL_KINDS[kind]
        for req in _draw(rng, round(rows_total * share), sets, values, {r["request"] for r in rows}):
            label = calls.dumps(req.calls)
            rows.append({"id": tables.row_id(req.text, label), "request": req.text, "label": label,
                         "skills": list(req.skills), "split": kind})
    return pd.DataFrame(rows)


def seed_set(rng: random.Random, n: int, eval_texts: set[str]) -> pd.DataFrame:
    rows = []
    for req in _draw(rng, n, ("seed",), "train", set(), EvalRequests(eval_texts)):
        label = calls.dumps(req.calls)
        rows.append({"id": tables.row_id(req.text, label), "generation": layout.SEED, "source": tables.SEED,
                     "parent_id": None, "skills": list(req.skills), "teacher": "seed", "request": req.text,
                     "label": label, "judge": "none"})
    return pd.DataFrame(rows)


def lexicon(rng: random.Random, n: int = 8000) -> list[str]:
    """Texts the tokenizer learns its pieces from: requests the generator writes (its own
    phrasings and training values only) with their calls, and the catalog. No evaluation
    request and no held-out value is among them."""
    texts = []
    for _ in range(n):
        req = phrasings.make_request(rng, phrasings.spec_for_skill(rng, rng.choice(SKILLS)))
        texts.append(req.text + " " + calls.render(req.calls))
    texts += list(FUNCTIONS) + list(PHENOMENA) + ["true", "false", "none"]
    return texts


def skills_of(request: str, made: list, catalog: Catalog) -> list[str]:
    """The skills a labelled request shows, read off its label (families, relative dates,
    optional and boolean arguments, enums, two calls, no call) and its words (unit words),
    as far as `catalog` counts them."""
    if not made:
        return ["no_call"]
    counted = set(catalog.phenomena)
    words = set(request.lower().replace(",", " ").replace("?", " ").split())
    made = [c for c in made if c["name"] in catalog.functions]  # a call of no function shows no skill
    out = {catalog.functions[c["name"]].family for c in made}
    for call in made:
        fn = catalog.functions[call["name"]]
        for name, top in call["arguments"].items():
            if fn.arg(name) is None:
                continue
            if not fn.arg(name).required:
                out.add("booleans" if fn.arg(name).type == BOOL and "booleans" in counted else "optional_args")
            for arg, value in scalars(fn.arg(name), top):
                if arg.type == DATE and isinstance(value, str) and not value[:2].isdigit():
                    out.add("relative_dates")
                if arg.type == ENUM:
                    out.add("enums")
                    if str(value) not in words and catalog.words_for(value)[0] not in words:
                        out.add("unit_words")
    if len(made) > 1:
        out.add("two_calls")
    return sorted(s for s in out if s in counted or s in catalog.families)


def labelled_set(path: Path, split: str, catalog: Catalog, *, key: str = "domain.toolcall.user_file",
                 redactor=None) -> pd.DataFrame:
    """Labelled requests, {"input": request, "output": [calls]} per JSONL line or Parquet
    row (store.read_records), checked against `catalog`, as rows of `split`; one-line
    errors name the file and line. A call may be BFCL's possible answer,
    `{function: {argument: [acceptable values]}}` (calls.accept_label). A line may also be
    an OpenAI chat-completions record (records.py: `messages`, `tools`), its calls in
    `output` or in the `response`'s `tool_calls`; it is checked against the tools it offered."""
    rows = []
    for where, rec in store.read_records(path, key):
        context, own = None, catalog
        try:
            if records.is_record(rec):
                made = records.read(where, rec, redactor or (lambda t: t))
                request, context = made.request, made.context
                own = records.catalog_for(context, catalog)
                if "output" not in rec and made.answered is None:
                    raise ValueError("a labelled record needs 'output' or a response with tool_calls")
                label = calls.accept_label(rec["output"] if "output" in rec else made.answered)
            else:
                request, label = rec["input"], calls.accept_label(rec["output"])
            if not isinstance(request, str) or not request.strip():
                raise ValueError("input is not a request")
        except (KeyError, TypeError, ValueError) as exc:
            raise store.DataError(f"{where}: not a request with a call list ({exc})") from None
        problems = check(None, calls.loads(label), own)
        if problems:
            raise store.DataError(f"{where}: not a valid call of the catalog ({problems[0]})")
        rows.append({"id": tables.row_id(request, label), "request": request, "label": label,
                     "skills": skills_of(request, calls.loads(label), own), "split": split, "context": context})
    if not rows:
        raise store.DataError(f"{path}: no requests")
    return pd.DataFrame(rows)


def user_set(path: Path, catalog: Catalog) -> pd.DataFrame:
    """The `user` split: requests written by hand, with their calls."""
    return labelled_set(path, "user", catalog)
