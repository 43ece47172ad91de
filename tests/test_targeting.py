"""The failure travels in the plan: a child of a failed row keeps the factors of
its parent that the failure analysis blames and draws the rest afresh (embedded teacher);
a model teacher sees the failed request, the student's answer and the verified label; the
probe's borderline rows get their own share."""

from __future__ import annotations

import json
import random
from collections import Counter

import pandas as pd
import pytest

from conftest import ROOT
from flywheel import tables
from flywheel.config import BackendConfig, Budget, DomainConfig, ExpandConfig
from flywheel.domain import get
from flywheel.gate import Gate
from flywheel.backends import templates
from flywheel.backends.cache import Cache
from flywheel.backends.client import Spend, open_client
from flywheel.toolcall import calls
from flywheel.toolcall import phrasings
from flywheel.toolcall import teacher
from flywheel.toolcall.phrasings import CATALOG, SKILLS
from flywheel.toolcall.factors import factors
from bench.llm_server import FakeLLM
from tasks.expand import blamed_factors, plan

TOOLCALL = get(DomainConfig())
BLAMED = "date:numeric"  # the notation this probe's student always fails ("on 12/05")


def probe_of(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A pool of generated requests and a probe in which every request writing a date as
    MM/DD fails, and a tenth of the others."""
    rng = random.Random(seed)
    reqs = [phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)])) for i in range(n)]
    pool = pd.DataFrame([{"id": f"p{i}", "generation": "g", "skills": list(r.skills), "label": calls.dumps(r.calls),
                          "request": r.text} for i, r in enumerate(reqs)])
    facs = [factors(r.text, calls.dumps(r.calls), CATALOG) for r in reqs]
    correct = [BLAMED not in f and rng.random() > 0.1 for f in facs]
    probe = pd.DataFrame({"id": pool["id"], "skills": pool["skills"], "split": "dev", "correct": correct,
                          "loss": [rng.random() for _ in reqs], "factors": facs,
                          "output": ["[]" if not ok else lab for ok, lab in zip(correct, pool["label"])],
                          "category": ["mastered" if ok else "failed" for ok in correct]})
    return pool, probe


def children(keep_factors: bool, pool, probe):
    cfg = ExpandConfig(budget=600, variations_per_failure=3, strategy={"error_driven": 1.0}, keep_factors=keep_factors)
    planned = tables.plan_table(plan(probe, pool, cfg, random.Random(0), dom=TOOLCALL), "gen-000")
    planned = planned[planned["kind"] == "error_driven"]  # the rest of the budget went to random
    gen, _ = teacher.embedded(random.Random(1), planned, "gen-001",
                            gate=Gate(set(), set(pool["request"])), error_rate=0.0, skill_error_rates={}, twice=("skill_synth",))
    return planned, gen


def test_a_child_keeps_its_parents_blamed_factors_and_varies_the_rest():
    pool, probe = probe_of()
    blamed = blamed_factors(probe)
    assert BLAMED in blamed and not any(f.startswith("calls:") for f in blamed)
    planned, gen = children(True, pool, probe)
    parents = pool.set_index("id")
    parent_factors = probe.set_index("id")["factors"]
    # the plan carries the failure: request, the student's answer, the verified label, and what to keep
    for row in planned.itertuples():
        assert row.parent_request == parents.loc[row.parent_id, "request"]
        assert row.parent_label == parents.loc[row.parent_id, "label"] and row.parent_output == "[]"
        assert set(row.keep) == set(parent_factors[row.parent_id]) & blamed
    numeric = gen[gen["parent_id"].map(lambda p: BLAMED in parent_factors[p])]
    assert len(numeric) >= 60
    keep = planned.set_index("parent_id")["keep"].map(list).groupby(level=0).first()
    whole = 0
    for child in gen.itertuples():
        shown = set(factors(child.request, child.label, CATALOG))
        assert set(child.kept) <= shown and set(child.kept) <= set(keep[child.parent_id])  # recorded truthfully
        whole += set(child.kept) == set(keep[child.parent_id])
        assert child.request != parents.loc[child.parent_id, "request"]
    assert whole >= 0.9 * len(gen)
    assert sum(BLAMED in factors(r, lab, CATALOG) for r, lab in zip(numeric["request"], numeric["label"])) >= 0.9 * len(numeric)
    # ... and the rest varies: a factor nobody blamed (the case) follows its parent no more than chance
    case = lambda fs: next(f for f in fs if f.startswith("case:"))  # noqa: E731
    same_case = sum(case(factors(c.request, c.label, CATALOG)) == case(parent_factors[c.parent_id]) for c in gen.itertuples())
    assert same_case < 0.7 * len(gen)
    values = sum(calls.loads(c.label) == calls.loads(parents.loc[c.parent_id, "label"]) for c in gen.itertuples())
    assert values <= 0.05 * len(gen)


def test_without_keep_factors_children_lose_what_made_the_parent_fail():
    pool, probe = probe_of()
    _, kept = children(True, pool, probe)
    planned, fresh = children(False, pool, probe)
    assert planned["keep"].map(len).sum() == 0 and fresh["kept"].map(len).sum() == 0
    parent_factors = probe.set_index("id")["factors"]

    def share(gen):
        of = gen[gen["parent_id"].map(lambda p: BLAMED in parent_factors[p])]
        return sum(BLAMED in factors(r, lab, CATALOG) for r, lab in zip(of["request"], of["label"])) / len(of)
    assert share(fresh) < 0.5 < 0.9 < share(kept)


def test_borderline_rows_get_their_own_share():
    pool, probe = probe_of()
    right = probe["correct"]
    probe.loc[right & (probe["loss"] > 0.7), "category"] = "borderline"
    cfg = ExpandConfig(budget=300, variations_per_failure=2,
                       strategy={"error_driven": 0.5, "borderline": 0.3, "random": 0.2})
    planned = tables.plan_table(plan(probe, pool, cfg, random.Random(0), dom=TOOLCALL), "gen-000")
    assert planned["kind"].value_counts().to_dict() == {"error_driven": 150, "borderline": 90, "random": 60}
    unsure = probe[probe["category"] == "borderline"].sort_values("loss", ascending=False)
    rows = planned[planned["kind"] == "borderline"]
    assert list(rows["parent_id"][::2]) == list(unsure["id"][:45])  # the least sure right answers first
    labels = pool.set_index("id")["label"]
    assert (rows["parent_output"] == rows["parent_id"].map(labels)).all()  # right answers: output is the label


def test_a_model_teacher_sees_the_failure_it_varies(tmp_path):
    pool, probe = probe_of(200)
    cfg = ExpandConfig(budget=30, variations_per_failure=3, strategy={"error_driven": 1.0})
    planned = tables.plan_table(plan(probe, pool, cfg, random.Random(0), dom=TOOLCALL), "gen-000")
    drawn = teacher.draw(random.Random(1), planned, Gate(set(), set(pool["request"])))
    truth = {req.text: calls.dumps(req.calls) for _, req, _ in drawn}
    seen: list[str] = []

    def brain(messages, body):
        seen.append(messages[0]["content"])
        return truth.get(messages[-1]["content"].strip(), "[]")
    with FakeLLM(brain) as server:
        client = open_client(BackendConfig(backend="openai", model="teacher", base_url=server.url),
                             Cache(tmp_path / "cache.sqlite"), Spend(Budget(), "generate.budget"), offline=False,
                             api_key=None, where="generate.teacher")
        template = templates.load(ROOT / "domains" / "toolcall" / "teacher.jinja")
        rows, _ = teacher.with_model(client, template, drawn, "gen-001", Gate(set(), set()), twice=("skill_synth",), catalog=CATALOG)
    assert len(seen) == len(drawn) == len(rows) >= 25
    by_request = {req.text: plan_row for plan_row, req, _ in drawn}
    for row in rows.itertuples():
        plan_row = by_request[row.request]
        prompt = next(s for s in seen if f"Request: {plan_row.parent_request}\n" in s)
        assert f"Wrong answer: {plan_row.parent_output}" in prompt
        assert f"Verified answer: {plan_row.parent_label}" in prompt
        assert row.label == truth[row.request]
    # a row with no parent is asked as before: no example in its prompt
    plain = template.render(request="x", catalog=[], conversation="", example_request=None, student_answer=None,
                            example_label=None)
    assert "got wrong" not in json.dumps(plain)
    assert Counter(planned["kind"]) == {"error_driven": 30}


FN = {"weather": "get_weather", "calendar": "list_events", "currency": "get_exchange_rate"}


def clusters(accuracy: dict[str, float], n: int = 40, tag: str = "") -> pd.DataFrame:
    """Dev probe rows of one-skill clusters with the given accuracies (and as many failures)."""
    rows = []
    for skill, acc in accuracy.items():
        for i in range(n):
            ok = i < acc * n
            rows.append({"id": f"{tag}{skill}{i}", "skills": [skill], "split": "dev", "correct": ok,
                         "loss": (i * 7919 % 97) / 97, "factors": [], "output": "[]",
                         "category": "mastered" if ok else "failed"})
    return pd.DataFrame(rows)


def test_learning_progress_moves_rows_from_a_cluster_that_did_not_move():
    from tasks.expand import progress

    before = clusters({"weather": 0.2, "calendar": 0.2, "currency": 0.2}, tag="old")
    after = clusters({"weather": 0.6, "calendar": 0.2, "currency": 0.2})
    spent = pd.DataFrame({"kind": ["error_driven"] * 200 + ["random"] * 50,
                          "skills": [["weather"]] * 100 + [["calendar"]] * 100 + [["currency"]] * 50})
    lp = progress(before, after, spent)
    assert lp[("weather",)]["per_row"] == pytest.approx(0.4 / 100) and lp[("calendar",)]["per_row"] == 0
    assert ("currency",) not in lp  # random rows are not spent on a cluster
    pool = pd.DataFrame({"id": after["id"], "generation": "g", "skills": after["skills"], "request": after["id"],
                         "label": [calls.dumps([{"name": FN[s[0]], "arguments": {}}]) for s in after["skills"]]})
    cfg = ExpandConfig(budget=60, variations_per_failure=3, strategy={"error_driven": 1.0}, allocate="progress")
    by = tables.plan_table(plan(after, pool, cfg, random.Random(0), dom=TOOLCALL, lp=lp), "gen-001")["skills"].str[0].value_counts()
    # weather moved (0.004 a row), calendar did not (0), currency is untried (the mean, 0.002): 2 : 0 : 1
    assert by.to_dict() == {"weather": 40, "currency": 20}
    hardest = tables.plan_table(plan(after, pool, cfg.model_copy(update={"allocate": "loss"}), random.Random(0),
                   dom=TOOLCALL), "gen-001")["skills"].str[0].value_counts()
    assert hardest.get("calendar", 0) > 0  # by loss alone, the stuck cluster gets rows too


def test_a_full_cluster_hands_its_rows_to_the_others():
    from tasks.expand import allocate

    parents = clusters({"weather": 0.9, "calendar": 0.0})  # 4 weather failures, 40 calendar
    failed = parents[~parents["correct"]]
    lp = {("weather",): {"per_row": 1.0}, ("calendar",): {"per_row": 0.01}}
    assert allocate(failed, 60, 3, lp) == {("weather",): 12, ("calendar",): 48}  # weather holds 4 x 3 at most
    assert sum(allocate(failed, 1000, 3, lp).values()) == 132  # no more than every parent's children


def test_self_consistency_spends_the_teachers_second_label_where_asked():
    pool, probe = probe_of()
    cfg = ExpandConfig(budget=600, variations_per_failure=3, strategy={"error_driven": 0.5, "random": 0.5})
    planned = tables.plan_table(plan(probe, pool, cfg, random.Random(0), dom=TOOLCALL), "gen-000")
    rates = {"relative_dates": 0.3, "two_calls": 0.3}

    def run(twice):
        gate = Gate(set(), set(pool["request"]))
        rows, truth = teacher.embedded(random.Random(1), planned, "gen-001", gate=gate, error_rate=0.2,
                                     skill_error_rates=rates, twice=twice)
        wrong = rows.set_index("id")["label"] != truth.set_index("id")["true_label"]
        return rows, wrong.groupby(rows.set_index("id")["kind"]).mean(), gate.refused["inconsistent"]
    plain, plain_wrong, none = run(())
    checked, checked_wrong, dropped = run(("error_driven",))
    assert none == 0 and dropped > 0 and set(plain["kind"]) == {"error_driven", "random"}
    assert checked_wrong["error_driven"] < 0.5 * plain_wrong["error_driven"]  # second opinions catch most errors


def test_the_committee_hears_targeted_rows_first_within_its_rows(tmp_path):
    from bench.llm_server import toolcall_brain
    from tasks.judge import ask

    pool, probe = probe_of(300)
    cfg = ExpandConfig(budget=300, variations_per_failure=3, strategy={"error_driven": 0.3, "random": 0.7})
    planned = tables.plan_table(plan(probe, pool, cfg, random.Random(0), dom=TOOLCALL), "gen-000")
    rows, truth = teacher.embedded(random.Random(1), planned, "gen-001", gate=Gate(set(), set(pool["request"])),
                                 error_rate=0.3, skill_error_rates={}, twice=("skill_synth",))
    rows = rows.sample(frac=1.0, random_state=0).reset_index(drop=True)  # the kinds interleaved
    verdicts = TOOLCALL.first_verdicts(rows, None, use_repair=True)
    undecided = verdicts[TOOLCALL.undecided(verdicts)]
    targeted = int((undecided["kind"] == "error_driven").sum())
    assert 10 < targeted < len(undecided) - 10
    request_truth = dict(zip(rows["request"], rows["id"].map(truth.set_index("id")["true_label"])))
    with FakeLLM(toolcall_brain(request_truth)) as server:
        client = open_client(BackendConfig(backend="openai", model="judge", base_url=server.url),
                             Cache(tmp_path / "cache.sqlite"), Spend(Budget(), "judge.budget"), offline=False,
                             api_key=None, where="judge.committee[0]")
        template = templates.load(ROOT / "domains" / "toolcall" / "judge.jinja")
        rubric = (ROOT / "domains" / "toolcall" / "rubric.md").read_text()
        out, report = ask(verdicts, TOOLCALL, 0.5, [(client, 0)], template, rubric, limit=targeted + 5)
        assert server.requests == targeted + 5
    assert report["asked"] == targeted + 5 and report["undecided"] == len(undecided)
    assert report["asked_by_kind"] == {"error_driven": targeted, "random": 5}
    heard = out["judge"] != "embedded"
    assert (out.loc[heard, "kind"] == "error_driven").sum() == targeted and heard.sum() == targeted + 5
