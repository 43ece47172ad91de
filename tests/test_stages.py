"""Pure parts of the stages: composing under each policy, decontamination, planning."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from flywheel import decontam, domain, store, tables
from flywheel.config import ComposeConfig, DomainConfig, ExpandConfig
from flywheel.decontam import check_decontaminated
from flywheel.toolcall import calls
from flywheel.toolcall.phrasings import CATALOG
from tasks.compose import compose, verified
from tasks.expand import plan

TOOLCALL = domain.get(DomainConfig())


def rows(n, source, start=0):
    return pd.DataFrame({
        "id": [f"{source}{i}" for i in range(start, start + n)], "generation": "g", "source": source,
        "parent_id": None, "skills": [["weather"]] * n, "teacher": "t",
        "request": [f"weather in city{i}" for i in range(start, start + n)], "label": "[]", "judge": "j",
        "context": None})


def test_accumulate_keeps_everything_and_dedups_by_request():
    seed, prev = rows(5, "seed"), rows(5, "seed")
    new = pd.concat([rows(3, "synthetic", 3), rows(4, "synthetic", 10)])  # city3, city4 repeat seed requests
    out = compose(prev, seed, new, ComposeConfig(policy="accumulate"), seed_value=1)
    assert len(out) == 5 + 1 + 4
    assert out["request"].is_unique
    assert (out.loc[out["request"] == "weather in city3", "source"] == "seed").all()  # the older row wins


def test_replace_keeps_only_seed_and_new():
    seed, prev, new = rows(5, "seed"), rows(50, "synthetic", 100), rows(7, "synthetic", 200)
    out = compose(prev, seed, new, ComposeConfig(policy="replace"), seed_value=1)
    assert len(out) == 12 and set(out["source"]) == {"seed", "synthetic"}


def test_subsample_has_a_fixed_budget_and_a_seed_floor():
    seed, new = rows(40, "seed"), rows(400, "synthetic", 100)
    cfg = ComposeConfig(policy="accumulate-subsample", budget=100, min_seed_share=0.3)
    out = compose(seed, seed, new, cfg, seed_value=1)
    assert len(out) == 100 and (out["source"] == "seed").sum() >= 30


def test_overlap_with_the_evaluation_set_is_an_error():
    evals = pd.DataFrame({"id": ["e"], "request": ["Weather in  CITY2"]})
    with pytest.raises(store.DataError, match="1 training request\\(s\\) equal or nearly duplicate evaluation requests"):
        check_decontaminated(rows(5, "seed"), evals, "data/gen-000/train.parquet")
    check_decontaminated(rows(2, "seed"), evals, "x")  # no overlap: no error


def test_verified_uses_final_labels_and_marks_corrections():
    v = rows(3, "synthetic").drop(columns=["judge"])
    v["student_output"], v["reason"], v["judge"] = "", "", "embedded"
    v["verdict"] = ["label_ok", "label_wrong", "both_wrong"]
    fixed = calls.dumps([{"name": "get_weather", "arguments": {"city": "city1"}}])
    v["final_label"] = ["[]", fixed, None]
    out = verified(v)
    assert list(out["source"]) == ["synthetic", "corrected"] and out["label"].iloc[1] == fixed
    assert out["id"].iloc[1] == tables.row_id("weather in city1", fixed)


FN = {"weather": "get_weather", "calendar": "list_events", "currency": "get_exchange_rate", "units": "convert_length"}
RATES = {"weather": 0.8, "calendar": 0.1, "currency": 0.3, "units": 0.0}  # known weak skills


def weak_pool(n_per_skill: int = 50, seed: int = 0):
    """A pool and its probe with known failure rates per skill."""
    rng = random.Random(seed)
    pool, probe = [], []
    for skill, fn in FN.items():
        for i in range(n_per_skill):
            rid = f"{skill}{i}"
            pool.append({"id": rid, "generation": "g", "source": "synthetic", "parent_id": None, "skills": [skill],
                         "teacher": "t", "request": f"{skill} request {i}", "judge": "j",
                         "label": calls.dumps([{"name": fn, "arguments": {}}])})
            ok = i >= RATES[skill] * n_per_skill
            probe.append({"id": rid, "skills": [skill], "correct": ok, "loss": rng.random(), "split": "dev",
                          "output": "[]", "factors": [], "category": "mastered" if ok else "failed"})
    return pd.DataFrame(pool), pd.DataFrame(probe)


def expand(strategy: dict, budget: int = 200, k: int = 2, order: str = "hardest"):
    pool, probe = weak_pool()
    cfg = ExpandConfig(budget=budget, variations_per_failure=k, strategy=strategy, failure_order=order)
    return tables.plan_table(plan(probe, pool, cfg, random.Random(0), dom=TOOLCALL,
                skills=list(FN)), "gen-000"), pool, probe


def shares(out) -> dict:
    return out["skills"].explode().value_counts(normalize=True).to_dict()


def test_error_driven_varies_each_failure_hardest_first_keeping_its_id():
    out, _, probe = expand({"error_driven": 1.0}, budget=60, k=3)
    failed = probe[~probe["correct"]].sort_values("loss", ascending=False)
    assert (out["kind"] == "error_driven").all() and len(out) == 60
    assert list(out["parent_id"][::3]) == list(failed["id"][:20])  # 3 variations each, by loss
    assert all(list(f) == [FN[s[0]]] for f, s in zip(out["functions"], out["skills"]))


def test_error_driven_spread_gives_each_skill_its_turn_hardest_first_within_it():
    out, _, probe = expand({"error_driven": 1.0}, budget=30, k=1, order="spread")
    # failures: weather 40, currency 15, calendar 5; hardest-first alone would give weather most of 30
    # (calendar runs out after 5 turns; the 30th row is the 13th turn, which currency takes by name)
    assert out["skills"].map(tuple).value_counts().to_dict() == {("calendar",): 5, ("currency",): 13,
                                                                  ("weather",): 12}
    failed = probe[~probe["correct"]]
    for skill, group in out.groupby(out["skills"].str[0]):
        hardest = failed[failed["skills"].str[0] == skill].sort_values("loss", ascending=False)["id"]
        assert list(group["parent_id"]) == list(hardest[:len(group)])
    hardest_only, _, _ = expand({"error_driven": 1.0}, budget=30, k=1)
    assert hardest_only["skills"].str[0].value_counts()["weather"] > 12


def test_error_driven_hands_what_it_cannot_use_to_random():
    out, _, probe = expand({"error_driven": 1.0}, budget=200, k=1)
    assert (out["kind"] == "error_driven").sum() == int((~probe["correct"]).sum()) == 60
    assert (out["kind"] == "random").sum() == 140 and len(out) == 200


def test_skill_weighted_follows_the_failure_profile():
    out, pool, _ = expand({"skill_weighted": 1.0}, budget=120)
    got = shares(out)
    assert set(got) == {"weather", "calendar", "currency"}  # no budget for a skill without failures
    assert abs(got["weather"] - 40 / 60) < 0.01 and abs(got["calendar"] - 5 / 60) < 0.01
    assert out["parent_id"].isin(pool["id"]).all()


def test_skill_synth_writes_only_for_the_weakest_skills():
    out, pool, _ = expand({"skill_synth": 1.0}, budget=90)
    assert set(shares(out)) == {"weather", "currency", "calendar"} and (out["kind"] == "skill_synth").all()
    got = out["skills"].explode().value_counts()
    assert got["weather"] > got["currency"] > got["calendar"]
    parents = pool.set_index("id").loc[out["parent_id"], "skills"]
    assert [s for s in parents] == list(out["skills"])  # reference items of the same skill


def test_random_spreads_the_budget_uniformly_and_mixes_share_one_budget():
    out, _, _ = expand({"random": 1.0}, budget=100)
    assert (out["kind"] == "random").all() and out["parent_id"].isna().all() and len(out) == 100
    mixed, _, _ = expand({"error_driven": 0.5, "skill_weighted": 0.25, "random": 0.25}, budget=100)
    assert mixed["kind"].value_counts().to_dict() == {"error_driven": 50, "skill_weighted": 25, "random": 25}
    assert mixed["plan_id"].is_unique


def test_the_gate_refuses_duplicates_and_evaluation_requests():
    from flywheel.gate import Gate

    gate = Gate({"What is the weather in Oslo"}, {"weather in paris"})
    assert not gate.admit("what is the  weather in oslo") and not gate.admit("Weather in Paris")
    assert gate.admit("weather in rome") and not gate.admit("weather in rome")
    assert gate.refused == {"eval_overlap": 1, "duplicate": 2, "inconsistent": 0, "unreadable": 0}


def test_skill_synth_keeps_only_self_consistent_labels():
    from flywheel.gate import Gate
    from flywheel.toolcall.teacher import embedded as generate

    rows, probe = weak_pool(20)
    synth = tables.plan_table(plan(probe, rows, ExpandConfig(budget=200, strategy={"skill_synth": 1.0}), random.Random(1),
                 dom=TOOLCALL, skills=list(FN)), "g")
    gate = Gate(set(), set())
    out, truth = generate(random.Random(2), synth, "gen-001", gate=gate, error_rate=0.4, skill_error_rates={}, twice=("skill_synth",))
    assert gate.refused["inconsistent"] > 20 and len(out) + gate.refused["inconsistent"] <= 200
    # a label that survives a second independent draw is far more often right than the teacher's 0.6
    right = (out.merge(truth, on="id")["label"] == truth["true_label"].values).mean()
    assert right > 0.75
    clean = Gate(set(), set())
    generate(random.Random(2), synth, "gen-001", gate=clean, error_rate=0.0, skill_error_rates={}, twice=("skill_synth",))
    assert clean.refused["inconsistent"] == 0


def test_floor_on_seed_share_holds_under_accumulate():
    seed, new = rows(20, "seed"), rows(200, "synthetic", 100)
    out = compose(seed, seed, new, ComposeConfig(policy="accumulate", min_seed_share=0.25), seed_value=1)
    assert (out["source"] == "seed").sum() == 20 and len(out) == 80


def test_mastered_rows_are_down_weighted_but_seed_rows_stay():
    seed, prev = rows(10, "seed"), pd.concat([rows(10, "seed"), rows(40, "synthetic", 100)])
    mastered = frozenset(list(prev["id"][:5]) + list(prev["id"][10:40]))  # 5 seed, 30 synthetic
    out = compose(prev, seed, rows(0, "synthetic"), ComposeConfig(mastered_weight=0.5), seed_value=1,
                  mastered=mastered)
    assert (out["source"] == "seed").sum() == 10 and (out["source"] == "synthetic").sum() == 10 + 15


def test_dev_split_is_stable_and_apart_from_training():
    from tasks.compose import split_dev

    new = rows(500, "synthetic")
    keep, dev = split_dev(new, 0.1)
    again = split_dev(new.sample(frac=1, random_state=3), 0.1)[1]
    assert 30 <= len(dev) <= 70 and set(dev["id"]) == set(again["id"])
    assert not set(keep["id"]) & set(dev["id"]) and len(keep) + len(dev) == 500


def test_categories_split_right_answers_by_perplexity():
    from tasks.probe import categorize

    correct = pd.Series([True] * 10 + [False] * 2)
    ppl = pd.Series([1.0 + i / 10 for i in range(10)] + [1.0, 9.0])
    cats = categorize(correct, ppl, 0.8)
    assert list(cats) == ["mastered"] * 8 + ["borderline"] * 2 + ["failed"] * 2


def test_diagnosis_names_the_skill_a_wrong_answer_missed():
    from flywheel.toolcall.embedded_judge import diagnose

    label = [{"name": "get_weather", "arguments": {"city": "oslo", "date": "tomorrow", "unit": "celsius"}},
             {"name": "list_events", "arguments": {"date": "05-01"}}]
    assert diagnose(label, label, CATALOG) == []
    assert diagnose(None, label, CATALOG) == ["format"]
    assert diagnose(label[:1], label, CATALOG) == ["calendar", "two_calls"]
    wrong_date = [dict(label[0], arguments=dict(label[0]["arguments"], date="today")), label[1]]
    assert diagnose(wrong_date, label, CATALOG) == ["relative_dates"]
    wrong_unit = [dict(label[0], arguments=dict(label[0]["arguments"], unit="fahrenheit")), label[1]]
    assert diagnose(wrong_unit, label, CATALOG) == ["unit_words"]
    assert diagnose(label, [], CATALOG) == ["no_call"]


def test_near_duplicates_of_evaluation_requests_are_refused_and_distinct_ones_kept():
    """Re-typed (case, punctuation, filler, contractions): refused by the gate and by the
    compose check. One value changed: a different request, kept."""
    from flywheel.gate import Gate

    evals = pd.DataFrame({"id": ["e1", "e2"], "request": ["What is the weather in Oslo tomorrow?", "thanks a lot"]})
    gate = Gate(set(evals["request"]), set())
    for retyped in ("hey, could you tell me what's the weather in oslo tomorrow pls", "WHAT IS THE WEATHER IN OSLO TOMORROW",
                    "Thanks a lot!!"):
        assert not gate.admit(retyped), retyped
    assert gate.refused["eval_overlap"] == 3
    assert gate.admit("what is the weather in Bergen tomorrow") and gate.admit("hello there")
    train = rows(2, "synthetic")
    train.loc[1, "request"] = "Hi! what's the weather in OSLO tomorrow, thanks"
    with pytest.raises(store.DataError, match=r"1 training request\(s\) equal or nearly duplicate .* first id synthetic1 \(near"):
        check_decontaminated(train, evals, "data/gen-000/train.parquet")


def test_an_error_driven_child_is_its_parents_meaning_in_new_words_and_values():
    """expand plans children of failures; generate's teacher writes them. Each child keeps
    the parent's functions and every skill it showed, and shares almost no wording and
    few values with it."""
    from flywheel.gate import Gate
    from flywheel.toolcall import phrasings
    from flywheel.toolcall import teacher
    from flywheel.toolcall.phrasings import SKILLS
    from flywheel.toolcall.factors import factors

    rng = random.Random(3)
    reqs = [phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)])) for i in range(120)]
    pool = pd.DataFrame([{"id": f"p{i}", "skills": list(r.skills), "label": calls.dumps(r.calls), "request": r.text}
                         for i, r in enumerate(reqs)])
    probe = pd.DataFrame({"id": pool["id"], "skills": pool["skills"], "correct": False, "split": "dev",
                          "loss": [rng.random() for _ in reqs], "output": "[]", "category": "failed",
                          "factors": [factors(r.text, calls.dumps(r.calls), CATALOG) for r in reqs]})
    cfg = ExpandConfig(budget=360, variations_per_failure=3, strategy={"error_driven": 1.0})
    children = tables.plan_table(plan(probe, pool, cfg, random.Random(0), dom=TOOLCALL), "gen-000")
    gen, _ = teacher.embedded(random.Random(1), children, "gen-001", gate=Gate(set(), set(pool["request"])),
                            error_rate=0.0, skill_error_rates={}, twice=("skill_synth",))
    assert len(gen) >= 0.95 * len(children)
    parents = pool.set_index("id")

    def trigrams(text):
        words = decontam.request_key(text).split()
        return {tuple(words[i: i + 3]) for i in range(len(words) - 2)}

    shared, same_values = [], 0
    for child in gen.itertuples():
        parent = parents.loc[child.parent_id]
        assert TOOLCALL.functions(child.label) == TOOLCALL.functions(parent.label)
        assert set(parent.skills) <= set(child.skills), (parent.request, child.request)
        grams = trigrams(child.request)
        shared.append(len(grams & trigrams(parent.request)) / max(1, len(grams)))
        values = [{str(v) for c in calls.loads(label) for v in c["arguments"].values()} for label in (child.label, parent.label)]
        same_values += bool(values[1]) and values[0] == values[1]
    assert sum(shared) / len(shared) < 0.1 and sum(s >= 0.5 for s in shared) <= 0.02 * len(shared)
    assert same_values <= 0.05 * len(gen)
    assert gen.groupby("parent_id")["request"].nunique().min() == 3  # each child of a failure worded differently


def with_samples(probe: pd.DataFrame, rates: dict[str, float]) -> pd.DataFrame:
    """`probe` with a success rate per row id over 4 samples and the greedy answer."""
    return probe.assign(samples=4, success_rate=[rates.get(i, 0.0 if not ok else 1.0)
                                                 for i, ok in zip(probe["id"], probe["correct"])])


def test_learnable_targets_rows_right_in_some_but_not_all_answers():
    pool, probe = weak_pool()
    # two greedy failures the student sometimes gets right, one greedy success it sometimes misses
    probe = with_samples(probe, {"weather0": 0.2, "currency3": 0.4, "units7": 0.8})
    cfg = ExpandConfig(budget=30, variations_per_failure=2, strategy={"error_driven": 1.0}, targets="learnable")
    out = tables.plan_table(plan(probe, pool, cfg, random.Random(0), dom=TOOLCALL, skills=list(FN)), "g")
    driven = out[out["kind"] == "error_driven"]
    assert sorted(set(driven["parent_id"])) == ["currency3", "units7", "weather0"] and len(driven) == 6
    assert (out["kind"] == "random").sum() == 24  # what the three cannot use goes to random
    greedy_only = probe.assign(samples=0, success_rate=probe["correct"].astype(float))
    with pytest.raises(store.DataError, match="probe.samples"):
        tables.plan_table(plan(greedy_only, pool, cfg, random.Random(0), dom=TOOLCALL, skills=list(FN)), "g")


def test_group_cap_bounds_each_skill_combination():
    pool, probe = weak_pool()  # failures: weather 40, currency 15, calendar 5
    cfg = ExpandConfig(budget=40, variations_per_failure=1, strategy={"error_driven": 1.0}, group_cap=0.25)
    out = tables.plan_table(plan(probe, pool, cfg, random.Random(0), dom=TOOLCALL, skills=list(FN)), "g")
    counts = out[out["kind"] == "error_driven"]["skills"].str[0].value_counts().to_dict()
    assert counts == {"weather": 10, "currency": 10, "calendar": 5}
    uncapped = tables.plan_table(plan(probe, pool, cfg.model_copy(update={"group_cap": 1.0}), random.Random(0), dom=TOOLCALL,
                    skills=list(FN)), "g")
    assert (uncapped["skills"].str[0] == "weather").sum() > 10


def test_vary_functions_gives_a_child_a_new_combination_for_its_parents_skill():
    from flywheel.toolcall.phrasings import SKILLS
    from flywheel.toolcall import phrasings

    rng = random.Random(5)
    reqs = [phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)])) for i in range(60)]
    pool = pd.DataFrame([{"id": f"p{i}", "skills": list(r.skills), "label": calls.dumps(r.calls), "request": r.text}
                         for i, r in enumerate(reqs)])
    probe = pd.DataFrame({"id": pool["id"], "skills": pool["skills"], "correct": False, "loss": 1.0, "split": "dev",
                          "output": "[]", "category": "failed", "factors": [[] for _ in reqs]})
    cfg = ExpandConfig(budget=180, variations_per_failure=3, strategy={"error_driven": 1.0}, vary_functions=True)
    out = tables.plan_table(plan(probe, pool, cfg, random.Random(0), dom=TOOLCALL), "g")
    parents = pool.set_index("id")
    same = 0
    for child in out.itertuples():
        parent = parents.loc[child.parent_id]
        assert set(child.skills) & set(parent.skills), (child.skills, parent.skills)  # one of its skills
        same += list(child.functions) == TOOLCALL.functions(parent.label)
    assert same < 0.7 * len(out)  # kept functions are the exception, not the rule
    kept = tables.plan_table(plan(probe, pool, cfg.model_copy(update={"vary_functions": False}), random.Random(0), dom=TOOLCALL), "g")
    assert all(list(c.functions) == TOOLCALL.functions(parents.loc[c.parent_id].label) for c in kept.itertuples())


def test_broad_first_plans_random_rows_while_most_dev_rows_fail():
    pool, probe = weak_pool()
    cfg = ExpandConfig(budget=40, variations_per_failure=1, strategy={"error_driven": 1.0}, broad_above=0.5)
    failing = probe.assign(split="dev", correct=False)
    assert set(tables.plan_table(plan(failing, pool, cfg, random.Random(0), dom=TOOLCALL, skills=list(FN)), "g")["kind"]) == {"random"}
    learning = probe.assign(split="dev")  # 60 of 200 fail
    assert set(tables.plan_table(plan(learning, pool, cfg, random.Random(0), dom=TOOLCALL, skills=list(FN)), "g")["kind"]) == \
        {"error_driven"}


def test_static_varies_the_seed_rows_round_robin_whatever_the_probe_says():
    pool, probe = weak_pool()
    pool.loc[pool.index[:7], "generation"] = "seed"
    cfg = ExpandConfig(budget=20, strategy={"static": 1.0})
    out = tables.plan_table(plan(probe, pool, cfg, random.Random(0), dom=TOOLCALL, skills=list(FN)), "g")
    seeds = sorted(pool.loc[pool.index[:7], "id"])
    assert (out["kind"] == "static").all() and list(out["parent_id"]) == [seeds[i % 7] for i in range(20)]
    assert out.equals(tables.plan_table(plan(probe.assign(correct=True), pool, cfg, random.Random(0), dom=TOOLCALL,
                           skills=list(FN)), "g"))
    with pytest.raises(store.DataError, match="no seed rows"):
        tables.plan_table(plan(probe, pool.assign(generation="g"), cfg, random.Random(0), dom=TOOLCALL, skills=list(FN)), "g")


def test_judge_off_keeps_every_readable_label_as_the_teacher_gave_it(tmp_path):
    from tasks.judge import unverified

    wrong = calls.dumps([{"name": "get_weather", "arguments": {"city": "nowhere"}}])
    gen = rows(3, "synthetic").assign(label=["[]", wrong, ""], raw="", error=["", "", "no JSON"], factors=[[]] * 3,
                                      kept=[[]] * 3, kind="random")
    out = unverified(gen)
    assert list(out["final_label"].iloc[:2]) == ["[]", wrong] and out["final_label"].isna().iloc[2]
    assert list(out["verdict"]) == ["label_ok", "label_ok", "teacher_error"]
    store.write_table(out, tmp_path / "verdicts.parquet", tables.VERDICTS)  # what the stage writes
    assert list(verified(out)["label"]) == ["[]", wrong]
