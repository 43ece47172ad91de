"""The `toolcall` domain (the default): requests in natural language, answers that are
function calls from a typed catalog, scored by AST match as in BFCL. Its teacher and
judge run embedded (teacher.py, verifier.py, judge.py), so the flywheel runs offline;
a teacher model or an LLM committee can take their place through the client layer.
"""

from __future__ import annotations

import random
from functools import cached_property

import pandas as pd

from flywheel.domain import Domain, Prepared, Teacher, register
from flywheel.toolcall import calls as C
from flywheel.toolcall import judge, phrasings, sets, teach
from flywheel.toolcall import catalog as K
from flywheel.toolcall.factors import factors as read_factors
from flywheel.toolcall.verifier import check
from flywheel.verdicts import LABEL_OK, MODEL_WRONG, TEACHER_ERROR, WRONG


@register
class Toolcall(Domain):
    name = "toolcall"
    metrics = ("ast",)
    # example_*: a row varied from a failure (plan.parquet): the failed request, the student's answer, the label
    teacher_variables = frozenset({"request", "catalog", "example_request", "student_answer", "example_label"})

    @cached_property
    def toolset(self) -> K.Catalog:
        """The functions requests call: `domain.tools` under the domain's path, or the shipped catalog."""
        return K.load(self.path / self.cfg.tools) if self.cfg.tools else K.SHIPPED

    @property
    def own_catalog(self) -> bool:
        return bool(self.cfg.tools)

    @property
    def needs_model_teacher(self) -> bool:
        """The embedded request generator is written for the shipped catalog: a catalog of
        your own needs a teacher model to write its requests."""
        return self.own_catalog

    def _parse(self, output: str) -> list | None:
        return C.parse(output.split(), self.toolset)

    def prepare(self, rng, cfg) -> Prepared:
        import pandas as pd

        from flywheel import store
        from flywheel.vocab import train_copy_tokenizer

        drawn = sets.eval_set(rng, cfg.eval_rows, cfg.eval_mix)
        user = self._user()
        drawn = drawn[~store.request_keys(drawn["request"]).isin(set(store.request_keys(user["request"])))]
        evals = pd.concat([drawn, user], ignore_index=True)
        seed = sets.seed_set(rng, cfg.seed_rows, set(evals["request"]))
        return Prepared(evals, seed, train_copy_tokenizer(sets.lexicon(rng), self.cfg.vocab_min_count))

    def _user(self):
        return sets.user_set(self.path / self.cfg.user_file, self.toolset)

    def check_files(self) -> None:
        self.toolset
        self._user()

    def label_format(self) -> str:
        return "json"

    def generate(self, plan, pool, *, generation, gate, rng, teacher: Teacher, cfg, rubric, bar=None):
        if teacher.client is None:
            return teach.embedded(rng, plan, generation, gate=gate, error_rate=cfg.error_rate,
                                  skill_error_rates=cfg.skill_error_rates, twice=tuple(cfg.self_consistency))
        return teach.with_model(teacher.client, teacher.template, teach.draw(rng, plan, gate), generation, gate, bar,
                                twice=tuple(cfg.self_consistency), catalog=self.toolset)

    def target(self, label: str) -> str:
        return C.render(C.loads(label))

    def chat_tools(self) -> list:
        return self.toolset.tools()

    def chat_target(self, label: str) -> str:
        """The calls as JSON, non-ASCII characters as they are ("Zürich", not "Z\\u00fcrich"),
        as tool-calling models write them."""
        import json

        return json.dumps(C.loads(label), ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    def from_chat(self, text: str) -> str:
        """The JSON list of calls a chat student writes, rendered as the built-in student's
        answers are; anything but exactly one JSON value of calls is unreadable ("")."""
        import json

        try:
            return C.render(C.loads(C.canonical(json.loads(text))))
        except (ValueError, TypeError):
            return ""

    def skills(self, seen: pd.Series | None = None) -> list[str]:
        skills = self.toolset.skills
        extra = sorted({s for row in seen for s in row} - set(skills)) if seen is not None else []
        return list(skills) + extra

    def score(self, labels: list[str], outputs: list[str]) -> list[bool]:
        return [C.ast_match(self._parse(o), C.loads(label)) for o, label in zip(outputs, labels)]

    def deployed_answer(self, output: str) -> str:
        calls = self._parse(output)
        return C.dumps(calls) if calls is not None else ""

    def functions(self, label: str) -> list[str]:
        return [c["name"] for c in C.loads(label)]

    def missing(self, output: str, label: str) -> list[str]:
        return judge.diagnose(self._parse(output), C.loads(label), self.toolset)

    def factors(self, request: str, label: str) -> list[str]:
        return read_factors(request, label, self.toolset)

    def random_spec(self, rng: random.Random, skill: str) -> tuple[list[str], list[str]]:
        spec = phrasings.spec_for_skill(rng, skill)
        return list(spec.functions), sorted(spec.phenomena) or [skill]

    def catalog(self) -> list:
        return self.toolset.describe()

    def canon(self, value) -> str | None:
        try:
            return C.canonical(value)
        except ValueError:
            return None

    def passes(self, label: str, request: str) -> bool:
        return not check(request, C.loads(label), self.toolset)

    def first_verdicts(self, rows: pd.DataFrame, outputs: list[str] | None, *, use_repair: bool) -> pd.DataFrame:
        """The verifier cascade and the student; rows without a label are `teacher_error`."""
        out = rows.copy()
        results = []
        for i, (request, label, error) in enumerate(zip(rows["request"], rows["label"], rows["error"])):
            if error:
                results.append(judge.Verdict(TEACHER_ERROR, error, None))
                continue
            answer = self._parse(outputs[i]) if outputs is not None else None
            results.append(judge.verdict(request, C.loads(label), answer, use_repair=use_repair,
                                         catalog=self.toolset))
        out["student_output"] = outputs if outputs is not None else ""
        out["verdict"] = [r.verdict for r in results]
        out["reason"] = [r.reason for r in results]
        out["final_label"] = [None if r.final_label is None else C.dumps(r.final_label) for r in results]
        out["judge"] = "embedded"
        out["agreement"] = None
        return out

    def undecided(self, verdicts: pd.DataFrame) -> pd.Series:
        """A label that passes every check without the student's agreement (swapped
        arguments pass every check), and a wrong label the verifier could not repair."""
        unconfirmed = (verdicts["verdict"] == LABEL_OK) & ~verdicts["reason"].str.contains(judge.AGREES)
        return unconfirmed | (verdicts["verdict"] == MODEL_WRONG) | \
            (verdicts["verdict"].isin(WRONG) & verdicts["final_label"].isna())

    def judge_report(self, verdicts: pd.DataFrame, truth: pd.DataFrame) -> dict:
        return judge.quality(verdicts, truth)
