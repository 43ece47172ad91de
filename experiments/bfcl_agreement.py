"""BFCL's single-turn data against the project's catalog loader and scorer.

    python -m experiments.bfcl_agreement      # writes experiments/bfcl.json (about 30 s)

Two tables (docs/bfcl.md shows them, tools/docs.py generates the blocks):

- acceptance: per category, the function docs `catalog.load` reads (as OpenAI tools, by
  BFCL's own conversion) and the questions whose every function it reads; each refusal
  counted by its one-line reason, and each distinct refusal listed (`refused`: the line,
  and the first question it comes from);
- agreement: on every readable question with a possible answer, answers of each kind
  made from that answer (the gold answer, each other acceptable value, an optional
  argument left out, a wrong value, a missing required argument, a wrong function, a
  float for an integer, a string without its commas, the calls in another order, no
  call), judged by BFCL's checker and by `calls.accepts`: on the answer as JSON (a
  chat student's path) and through the built-in student's call text (render, then
  parse). Every disagreement is listed with the answer; a gold answer BFCL's own checker
  rejects is BFCL's data bug and is listed as such.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "bfcl.json"
KINDS = ("gold", "alternative", "optional_left_out", "wrong_value", "missing_required", "wrong_function",
         "float_for_integer", "no_commas", "nested", "other_order", "no_call")


def _reason(message: str) -> str:
    """A refusal's reason without the names (what is counted)."""
    text = message.split(": ", 2)[-1]
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\d+(\.\d+)?", "…", text)
    return text.split(" (")[0]


def _kinds(made: list[dict], cat) -> list[tuple[str, list[dict]]]:
    """(kind, answer) pairs made from the question's possible answer `made`."""
    from flywheel.toolcall.catalog import INT

    out: list[tuple[str, list[dict]]] = []
    plain = [{"name": c["name"], "arguments": c["arguments"]} for c in made]
    if not made:
        return [("no_call", [])]
    out.append(("gold", plain))
    if any(isinstance(v, (list, dict)) for c in plain for v in c["arguments"].values()):
        out.append(("nested", plain))
    if len(plain) > 1:
        out.append(("other_order", plain[::-1]))
    out.append(("no_call", []))
    for i, c in enumerate(made):
        fn = cat.functions.get(c["name"])

        def changed(name, value=None, drop=False, rename=None):
            new = copy.deepcopy(plain)
            if rename:
                new[i]["name"] = rename
            elif drop:
                new[i]["arguments"].pop(name, None)
            else:
                new[i]["arguments"][name] = value
            return new

        out.append(("wrong_function", changed(None, rename=c["name"] + "_x")))
        for name, alternatives in c["accept"].items():
            first = c["arguments"].get(name)
            for alt in alternatives[1:]:
                if alt != "" and not isinstance(alt, (dict, list)):
                    out.append(("alternative", changed(name, alt)))
            if "" in alternatives and name in c["arguments"]:
                out.append(("optional_left_out", changed(name, drop=True)))
            spec = fn.arg(name) if fn else None
            if spec is not None and spec.required and name in c["arguments"]:
                out.append(("missing_required", changed(name, drop=True)))
            if isinstance(first, str) and first:
                out.append(("wrong_value", changed(name, first + " zz")))
                if "," in first:
                    out.append(("no_commas", changed(name, first.replace(",", ""))))
            elif isinstance(first, bool):
                out.append(("wrong_value", changed(name, not first)))
            elif isinstance(first, (int, float)):
                out.append(("wrong_value", changed(name, first + 1)))
                if spec is not None and spec.type == INT and isinstance(first, int):
                    out.append(("float_for_integer", changed(name, float(first))))
    return out


def measure() -> dict:
    sys.path.insert(0, str(ROOT))
    from flywheel import bfcl
    from flywheel.store import DataError
    from flywheel.toolcall import calls
    from flywheel.toolcall.catalog import from_tools

    acceptance, refusals, refused = {}, Counter(), {}
    stats: dict[str, Counter] = defaultdict(Counter)
    disagreements, rejected_gold = [], []
    for category in bfcl.CATEGORIES:
        qs = bfcl.questions(category)
        functions = accepted = 0
        for q in qs:
            for tool in q["tools"]:
                functions += 1
                try:
                    from_tools([tool], "BFCL")
                    accepted += 1
                except DataError as exc:
                    refusals[_reason(str(exc))] += 1
                    message = str(exc).split(": ", 1)[1]  # the function, the argument, the reason
                    refused.setdefault(message, q["id"])
        readable = [q for q in qs if bfcl.readable(q)]
        acceptance[category] = {"functions": functions, "functions_accepted": accepted, "questions": len(qs),
                                "questions_readable": len(readable)}
        for q in readable:
            cat = bfcl.catalog(q)
            label = calls.loads(bfcl.label(q))
            for kind, answer in _kinds(label, cat):
                theirs = bfcl.check(q, answer)
                ours = calls.accepts(answer, label, cat)
                text = calls.accepts(calls.parse(calls.render(answer).split(), cat), label, cat)
                s = stats[kind]
                s["answers"] += 1
                s["bfcl_accepts"] += theirs
                s["project_accepts"] += ours
                s["agree_json"] += theirs == ours
                s["agree_text"] += theirs == text
                if kind == "gold" and not theirs:
                    rejected_gold.append({"id": q["id"], "answer": answer})
                elif theirs != ours or theirs != text:
                    disagreements.append({"id": q["id"], "kind": kind, "bfcl": theirs, "json": ours, "text": text,
                                          "answer": answer})
    return {"bfcl_eval": bfcl._bfcl().version, "acceptance": acceptance, "refusals": dict(refusals.most_common()),
            "refused": [{"first_in": qid, "refusal": message} for message, qid in refused.items()],
            "agreement": {k: dict(stats[k]) for k in KINDS if k in stats}, "disagreements": disagreements,
            "gold_rejected_by_bfcl": rejected_gold}


def main() -> None:
    from bench import commit, cpu_model

    result = {"commit": commit(), "cpu": cpu_model(), **measure()}
    OUT.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    for k, v in result["agreement"].items():
        print(f"{k:18} {v}")
    print("refusals", result["refusals"])
    print("disagreements", len(result["disagreements"]), "gold rejected by BFCL", len(result["gold_rejected_by_bfcl"]))


if __name__ == "__main__":
    main()
