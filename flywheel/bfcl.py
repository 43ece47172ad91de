"""The Berkeley Function Calling Leaderboard's single-turn categories, from the pinned
`bfcl-eval` package: its questions, its conversion of function docs to OpenAI tools and
its AST checker, imported from the package itself (no network, no API key).

`bfcl-eval` imports every provider's SDK through `bfcl_eval.constants.model_config`;
the checker needs only one entry of it (whether a model's function names turn dots into
underscores, as OpenAI's must). `_bfcl` puts a one-entry stand-in for that module in
`sys.modules` before importing the checker, so nothing else is imported
(bench/bfcl_cost.py measures the import and the scoring).

A question is a row `{id, category, messages, tools, answer}`: BFCL's conversation turns,
its functions as OpenAI tools (BFCL's own `convert_to_tool`, dots to underscores), and its
possible answer as a label (calls.from_possible_answer; `[]` for the irrelevance
categories). `score` asks BFCL's checker about answers given as labels.
"""

from __future__ import annotations

import functools
import json
import random
import sys
import types
from pathlib import Path

from flywheel.store import DataError
from flywheel.toolcall import calls
from flywheel.toolcall.catalog import Catalog, from_tools

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple",
              "live_parallel", "live_parallel_multiple", "irrelevance", "live_irrelevance")
IRRELEVANCE = ("irrelevance", "live_irrelevance")
# BFCL's two summaries (bfcl_eval/eval_checker/eval_runner_helper.py): non-live, the
# unweighted mean of simple (there: the mean of Python, Java and JavaScript; here Python
# only, the one language a Python tool catalog has), multiple, parallel and
# parallel_multiple; live, those four live categories weighted by their counts. The
# irrelevance categories are in neither.
NON_LIVE_AST = ("simple_python", "multiple", "parallel", "parallel_multiple")
LIVE_AST = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
MODEL = "gpt-4o-2024-11-20-FC"  # the name the checker is given: an OpenAI model (dots in names become _)


@functools.cache
def _bfcl() -> types.SimpleNamespace:
    """BFCL's data folder, checker and tool conversion, imported without its providers' SDKs."""
    try:
        import bfcl_eval
    except ImportError:
        raise DataError("evaluate.bfcl: the bfcl-eval package is not installed (make setup installs it)") from None
    if "bfcl_eval.constants.model_config" not in sys.modules:
        stub = types.ModuleType("bfcl_eval.constants.model_config")
        stub.MODEL_CONFIG_MAPPING = {MODEL.replace("_", "/"): types.SimpleNamespace(underscore_to_dot=True)}
        sys.modules["bfcl_eval.constants.model_config"] = stub
    from bfcl_eval.constants.enums import Language, ModelStyle
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    from bfcl_eval.model_handler.utils import convert_to_tool

    return types.SimpleNamespace(data=Path(bfcl_eval.__file__).parent / "data", checker=ast_checker,
                                 python=Language.PYTHON, convert=convert_to_tool, mapping=GORILLA_TO_OPENAPI,
                                 style=ModelStyle.OPENAI_COMPLETIONS, version=_version())


def _version() -> str:
    from importlib.metadata import version

    return version("bfcl-eval")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@functools.cache
def questions(category: str) -> tuple[dict, ...]:
    """Every single-turn question of `category`, in BFCL's order."""
    if category not in CATEGORIES:
        raise DataError(f"evaluate.bfcl.categories: {category!r} is not one of {', '.join(CATEGORIES)}")
    b = _bfcl()
    answers = {} if category in IRRELEVANCE else \
        {a["id"]: a["ground_truth"] for a in _lines(b.data / "possible_answer" / f"BFCL_v4_{category}.json")}
    out = []
    for q in _lines(b.data / f"BFCL_v4_{category}.json"):
        turns = q["question"][0] if q["question"] and isinstance(q["question"][0], list) else q["question"]
        truth = answers.get(q["id"], [])
        out.append({"id": q["id"], "category": category, "messages": turns, "functions": q["function"],
                    "tools": b.convert(q["function"], b.mapping, b.style), "truth": truth})
    return tuple(out)


def label(question: dict) -> str:
    """The question's possible answer as a label (names as the tools write them)."""
    made = [calls.from_possible_answer({k.replace(".", "_"): v for k, v in a.items()}, question["id"])
            for a in question["truth"]]
    return calls.dumps(made)


def catalog(question: dict) -> Catalog:
    """The question's tools as a catalog (DataError when one is refused)."""
    return from_tools(question["tools"], f"BFCL {question['id']}")


def readable(question: dict) -> bool:
    try:
        catalog(question)
    except DataError:
        return False
    return True


def request(question: dict) -> str:
    """The question's last user turn (the text decontamination compares)."""
    return next((m["content"] for m in reversed(question["messages"]) if m.get("role") == "user"), "")


@functools.cache
def all_requests() -> list[str]:
    """Every single-turn question's request: what a traffic log is decontaminated against,
    so that BFCL stays unseen like the `user` split ([] without the bfcl-eval package)."""
    try:
        import bfcl_eval  # noqa: F401
    except ImportError:
        return []
    return [request(q) for c in CATEGORIES for q in questions(c)]


def check(question: dict, answer: list[dict] | None) -> bool:
    """BFCL's verdict on an answer given as calls (None: unreadable). Irrelevance: right
    when no call is made (BFCL counts an unreadable answer as no call)."""
    if question["category"] in IRRELEVANCE:
        return not answer
    if not answer:
        return False
    b = _bfcl()
    output = [{c["name"]: c.get("arguments") or {}} for c in answer]
    try:
        return bool(b.checker(question["functions"], output, question["truth"], b.python, question["category"],
                              MODEL)["valid"])
    except (KeyError, TypeError, AttributeError, IndexError):  # an answer shape the checker cannot read is wrong
        return False


def sample(categories: list[str], per_category: int, seed: int) -> list[dict]:
    """Up to `per_category` questions of each category (0: all) whose tools the catalog
    loader reads, drawn with `seed`, in BFCL's order."""
    out = []
    for cat in categories:
        pool = [q for q in questions(cat) if readable(q)]
        if per_category and per_category < len(pool):
            keep = set(random.Random(f"{seed}:{cat}").sample(range(len(pool)), per_category))
            pool = [q for i, q in enumerate(pool) if i in keep]
        out += pool
    return out


def summaries(accuracy: dict[str, tuple[int, int]]) -> dict[str, float]:
    """BFCL's two summaries from per-category (right, asked), over the categories asked."""
    out: dict[str, float] = {}
    non_live = [accuracy[c][0] / accuracy[c][1] for c in NON_LIVE_AST if accuracy.get(c, (0, 0))[1]]
    if non_live:
        out["non_live"] = sum(non_live) / len(non_live)
    live = [c for c in LIVE_AST if accuracy.get(c, (0, 0))[1]]
    if live:
        out["live"] = sum(accuracy[c][0] for c in live) / sum(accuracy[c][1] for c in live)
    return out


def _json_calls(text: str) -> list[dict] | None:
    """A chat student's answer as calls (None: not exactly one JSON value of calls, bare or
    inside <tool_call>...</tool_call> as a student with its tools in the system message writes it)."""
    text = text.strip()
    if text.startswith("<tool_call>") and text.endswith("</tool_call>"):
        text = text[len("<tool_call>"): -len("</tool_call>")]
    try:
        return calls.loads(calls.canonical(json.loads(text)))
    except (ValueError, TypeError):
        return None


def answer(student, qs: list[dict], *, batch_size: int, max_new_tokens: int,
           on_batch=None) -> list[list[dict] | None]:
    """The student's answers to `qs` as calls (None where unreadable). A student
    that reads tools (Hugging Face) gets each question's turns and tools through its chat
    template; the built-in one gets the last user turn and its call text is read with the
    question's tools (it never saw them: it can only get the irrelevance questions right)."""
    requests = [request(q) for q in qs]
    if student.reads_tools:
        texts = student.answer(requests, batch_size=batch_size, max_new_tokens=max_new_tokens, on_batch=on_batch,
                               contexts=[{"messages": q["messages"], "tools": q["tools"]} for q in qs], raw=True)
        return [_json_calls(t) for t in texts]
    outs = student.answer(requests, batch_size=batch_size, max_new_tokens=max_new_tokens, on_batch=on_batch)
    return [calls.parse(o.split(), catalog(q)) for o, q in zip(outs, qs)]


def scored(qs: list[dict], answers: list[list[dict] | None]) -> dict[str, tuple[int, int]]:
    """BFCL's verdicts, as (right, asked) per category."""
    per: dict[str, tuple[int, int]] = {}
    for q, answer_ in zip(qs, answers):
        r, n = per.get(q["category"], (0, 0))
        per[q["category"]] = (r + check(q, answer_), n + 1)
    return per
