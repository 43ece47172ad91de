"""The `toolcall` domain (the default): requests in natural language, answers that are
function calls from a typed catalog, scored by AST match as in BFCL. Its teacher and
judge run embedded (teacher.py, verifier.py, judge.py), so the flywheel runs offline;
a teacher model or an LLM committee can take their place through the client layer.
"""

from __future__ import annotations

import random
from functools import cached_property

import pandas as pd

from flywheel import layout, store
from flywheel.domain import Domain, Prepared, Teacher, register
from flywheel.toolcall import calls as C
from flywheel.toolcall import judge, phrasings, sets, teach, traffic
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
    # the writer (a catalog of your own): the plan row's functions and skills, and the failure it varies
    # (variation: the row's number; reference_*: a pool row calling the same functions)
    writer_variables = frozenset({"catalog", "functions", "skills", "variation", "reference_request",
                                  "reference_calls", "example_request", "student_answer", "example_label"})

    @cached_property
    def toolset(self) -> K.Catalog:
        """The functions requests call: `domain.tools` under the domain's path, or the shipped catalog."""
        return K.load(self.path / self.cfg.tools) if self.cfg.tools else K.SHIPPED

    @property
    def own_catalog(self) -> bool:
        return bool(self.cfg.tools)

    @property
    def needs_model_teacher(self) -> bool:
        """The embedded request generator is written for the shipped catalog, and its
        teacher labels only the requests it wrote: a catalog of your own (whose requests a
        teacher model writes) and traffic (which one labels) need a teacher model."""
        return self.own_catalog or bool(self.cfg.traffic)

    @property
    def why_model_teacher(self) -> str:
        what = "a catalog of your own (domain.tools)" if self.own_catalog else "traffic (domain.traffic)"
        return f"{what}: the embedded teacher knows only the shipped catalog and the requests it writes itself"

    @property
    def needs_writer(self) -> bool:
        return self.own_catalog

    def redactor(self):
        from flywheel.redact import from_config

        return from_config(self.cfg.redact)

    def _traffic(self, evals: pd.DataFrame) -> pd.DataFrame:
        """The traffic file, redacted, without requests equal or near to an evaluation one."""
        return traffic.decontaminate(traffic.read(self.root / self.cfg.traffic, self.redactor()),
                                     list(evals["request"]))[0]

    def traffic_plan(self, index: int, evals: pd.DataFrame, seed: int) -> pd.DataFrame:
        if not self.cfg.traffic or not self.cfg.traffic_rows:
            return super().traffic_plan(index, evals, seed)
        part = traffic.take(self._traffic(evals), index, self.cfg.traffic_rows, self.cfg.traffic_slice, seed)
        rows = [store.plan_row(store.row_id("traffic-plan", str(index), i), None, [], [], traffic.KIND,
                               parent_request=text) for i, text in zip(part["id"], part["request"])]
        return pd.DataFrame(rows, columns=store.PLAN.names)

    def _parse(self, output: str) -> list | None:
        return C.parse(output.split(), self.toolset)

    def prepare(self, rng, cfg) -> Prepared:
        from flywheel.vocab import train_copy_tokenizer

        if self.own_catalog:
            return self._prepare_own()
        drawn = sets.eval_set(rng, cfg.eval_rows, cfg.eval_mix)
        user = self._user()
        drawn = drawn[~store.request_keys(drawn["request"]).isin(set(store.request_keys(user["request"])))]
        evals = pd.concat([drawn, user], ignore_index=True)
        seed = sets.seed_set(rng, cfg.seed_rows, set(evals["request"]))
        return Prepared(evals, seed, train_copy_tokenizer(sets.lexicon(rng), self.cfg.vocab_min_count))

    def _prepare_own(self) -> Prepared:
        """A catalog of your own: the `user` split is `domain.eval_file` (requests people sent,
        labelled by hand), the seed set `domain.seed_file` if there is one, and the student's
        tokenizer learns from the catalog, the seed set and the log's first `traffic_rows`
        requests in file order (never the evaluation file). Only the head of the log: a
        log that grows leaves the tokenizer, and so every checkpoint, as it was."""
        from flywheel.decontam import NearDuplicates
        from flywheel.vocab import train_copy_tokenizer

        evals = self._user()
        seed = pd.DataFrame(columns=store.TRAINSET.names)
        if (self.path / self.cfg.seed_file).is_file():
            seed = self._labelled(self.cfg.seed_file, "seed", "domain.seed_file")
            near = NearDuplicates(list(evals["request"]))
            exact = set(store.request_keys(evals["request"]))
            seed = seed[[store.request_key(t) not in exact and near.match(t) is None for t in seed["request"]]]
            seed = seed.drop(columns="split").assign(generation=layout.SEED, source="seed", parent_id=None,
                                                     teacher="seed", judge="none")[store.TRAINSET.names]
        texts = [t + " " + C.render(C.loads(label)) for t, label in zip(seed["request"], seed["label"])]
        if self.cfg.traffic:
            texts += list(self._traffic(evals)["request"].head(self.cfg.traffic_rows))
        names = " ".join([*self.toolset.functions, *(a.name for f in self.toolset.functions.values() for a in f.args),
                          *(w for ws in self.toolset.enum_words.values() for w in ws), "true false none ( ) = , ;",
                          *(f"<{k.upper()}>" for k in self.redactor().patterns)])
        texts += [names] * self.cfg.vocab_min_count  # the calls' own words are always tokens
        return Prepared(evals, seed.reset_index(drop=True), train_copy_tokenizer(texts, self.cfg.vocab_min_count))

    def _labelled(self, name: str, split: str, key: str) -> pd.DataFrame:
        """A file of labelled requests, redacted like traffic (the request and the labels'
        text values alike, so a placeholder in one is the same placeholder in the other)."""
        rows = sets.labelled_set(self.path / name, split, self.toolset, key=key)
        if not self.cfg.traffic and not self.own_catalog:
            return rows
        red = self.redactor()
        rows["request"] = [red(t) for t in rows["request"]]
        rows["label"] = [C.dumps([{"name": c["name"], "arguments": {k: red(v) if isinstance(v, str) else v
                                                                    for k, v in c["arguments"].items()}}
                                  for c in C.loads(label)]) for label in rows["label"]]
        rows["id"] = [store.row_id(r, label) for r, label in zip(rows["request"], rows["label"])]
        return rows

    def _user(self):
        if self.own_catalog:
            return self._labelled(self.cfg.eval_file, "user", "domain.eval_file")
        return self._labelled(self.cfg.user_file, "user", "domain.user_file")

    def check_files(self) -> None:
        self.toolset
        evals = self._user()
        if self.cfg.traffic:
            self._traffic(evals)

    def label_format(self) -> str:
        return "json"

    def generate(self, plan, pool, *, generation, gate, rng, teacher: Teacher, cfg, rubric, bar=None):
        twice = tuple(cfg.self_consistency)
        if teacher.client is None:
            return teach.embedded(rng, plan, generation, gate=gate, error_rate=cfg.error_rate,
                                  skill_error_rates=cfg.skill_error_rates, twice=twice)
        composed = plan[plan["kind"] != traffic.KIND]
        drawn = teach.logged(plan, gate) + ([] if self.own_catalog else teach.draw(rng, composed, gate))
        rows, truth = teach.with_model(teacher.client, teacher.template, drawn, generation, gate, bar, twice=twice,
                                       catalog=self.toolset)
        if self.own_catalog:
            written = teach.written(teacher.client, teacher.writer, composed, pool, generation, gate, self.toolset,
                                    rng, bar, twice=twice)
            rows = pd.concat([rows, written], ignore_index=True)
        return rows, truth

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
        if self.own_catalog:
            return self.toolset.random_spec(rng, skill)
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
        """Precision and recall on the rows whose truth is known (the generator's); logged
        requests and requests a teacher model wrote have none and are only counted."""
        from flywheel.verdicts import VERDICTS

        known = verdicts["id"].isin(set(truth["id"]))
        counts = {v: int((verdicts["verdict"] == v).sum()) for v in VERDICTS}
        if not known.any():
            return {"verdicts": counts, "rows": len(verdicts), "kept": int(verdicts["final_label"].notna().sum())}
        report = judge.quality(verdicts[known], truth)
        if not known.all():
            report["verdicts"] = counts
            report["rows_without_truth"] = int((~known).sum())
        return report
