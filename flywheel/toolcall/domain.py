"""The `toolcall` domain (the default): requests in natural language, answers that are
function calls from a typed catalog, scored by AST match as in BFCL. Its teacher and
judge run embedded (teacher.py, verifier.py, embedded_judge.py), so the flywheel runs offline;
a teacher model or an LLM committee can take their place through the client layer.
"""

from __future__ import annotations

import random
from functools import cached_property

import pandas as pd

from flywheel import decontam, layout, tables
from flywheel.decontam import EvalRequests
from flywheel.domain import Domain, Prepared, Teacher, register
from flywheel.toolcall import calls
from flywheel.toolcall import embedded_judge, phrasings, records, sets, traffic
from flywheel.toolcall.catalog import Catalog, shipped
from flywheel.toolcall.catalog import load as load_catalog
from flywheel.toolcall.teacher import draw, embedded, logged, with_model, written
from flywheel.toolcall.factors import factors as read_factors
from flywheel.toolcall.verifier import check
from flywheel.verdicts import LABEL_OK, MODEL_WRONG, TEACHER_ERROR, WRONG


@register
class Toolcall(Domain):
    name = "toolcall"
    metrics = ("ast",)
    # example_*: a row varied from a failure (plan.parquet): the failed request, the student's answer, the label
    # conversation: a logged request's turns before it (records.py), "" for none
    teacher_variables = frozenset({"request", "catalog", "conversation", "example_request", "student_answer",
                                   "example_label"})
    # the writer (a catalog of your own): the plan row's functions and skills, and the failure it varies
    # (variation: the row's number; reference_*: a pool row calling the same functions)
    writer_variables = frozenset({"catalog", "functions", "skills", "variation", "reference_request",
                                  "reference_calls", "example_request", "student_answer", "example_label"})

    @property
    def opts(self):
        """This domain's own section of params.yaml (domain.toolcall)."""
        return self.cfg.toolcall

    @cached_property
    def toolset(self) -> Catalog:
        """The functions requests call: `domain.toolcall.tools` under the domain's path, or the shipped catalog."""
        return load_catalog(self.path / self.opts.tools) if self.opts.tools else shipped()

    @property
    def own_catalog(self) -> bool:
        return bool(self.opts.tools)

    @property
    def needs_model_teacher(self) -> bool:
        """The embedded request generator is written for the shipped catalog: a catalog of
        your own needs a teacher model to write its requests. (Logged requests need one to
        label them too: flywheel/domain.py `require_teacher`.)"""
        return self.own_catalog

    @property
    def why_model_teacher(self) -> str:
        return "a catalog of your own (domain.toolcall.tools): the embedded teacher knows only the shipped catalog"

    @property
    def needs_writer(self) -> bool:
        return self.own_catalog

    @staticmethod
    def redactor(traffic_cfg):
        from flywheel.redact import from_config

        return from_config(traffic_cfg.redact)

    def _traffic(self, traffic_cfg, evals: pd.DataFrame) -> pd.DataFrame:
        """The log, redacted, without requests equal or near to an evaluation one: of the
        `user` split, or one of BFCL's questions (evaluate.bfcl: flywheel/bfcl.py)."""
        from flywheel import bfcl

        return traffic.decontaminate(traffic.read(self.root / traffic_cfg.file, self.redactor(traffic_cfg)),
                                     list(evals["request"]) + bfcl.all_requests())[0]

    def traffic_plan(self, traffic_cfg, index: int, evals: pd.DataFrame, seed: int) -> list[dict]:
        if not traffic_cfg.file or not traffic_cfg.rows:
            return super().traffic_plan(traffic_cfg, index, evals, seed)
        part = traffic.take(self._traffic(traffic_cfg, evals), index, traffic_cfg.rows, traffic_cfg.slice, seed)
        return [tables.plan_row(None, [], [], tables.TRAFFIC, parent_request=text, context=context)
                for text, context in zip(part["request"], part["context"])]

    def _parse(self, output: str, catalog: Catalog | None = None) -> list | None:
        return calls.parse(output.split(), catalog or self.toolset)

    def shown_with(self, context: str | None) -> tuple[list, str]:
        """What a prompt shows of a row's context: its tools (as `catalog`), its earlier
        turns (as `conversation`)."""
        from flywheel.backends.templates import conversation

        return self.catalog_of(context).describe(), conversation(records.context_of(context).get("messages", []))

    def catalog_of(self, context: str | None) -> Catalog:
        """A row's catalog: the tools its logged request offered (records.py), else the domain's."""
        return records.catalog_for(context, self.toolset)

    def prepare(self, rng, cfg, traffic_cfg) -> Prepared:
        from flywheel.vocab import train_copy_tokenizer

        if self.own_catalog:
            return self._prepare_own(traffic_cfg)
        drawn = sets.eval_set(rng, cfg.eval_rows, cfg.eval_mix)
        user = self._user(traffic_cfg)
        drawn = drawn[~decontam.request_keys(drawn["request"]).isin(set(decontam.request_keys(user["request"])))]
        evals = pd.concat([drawn, user], ignore_index=True)
        seed = sets.seed_set(rng, cfg.seed_rows, set(evals["request"]))
        return Prepared(evals, seed, train_copy_tokenizer(sets.lexicon(rng), self.opts.vocab_min_count))

    def _prepare_own(self, traffic_cfg) -> Prepared:
        """A catalog of your own: the `user` split is `user_file` (requests people sent,
        labelled by hand), the seed set `seed_file` if there is one, and the student's
        tokenizer learns from the catalog, the seed set and the log's first `traffic.rows`
        requests in file order (never the evaluation file). Only the head of the log: a
        log that grows leaves the tokenizer, and so every checkpoint, as it was."""
        from flywheel.vocab import train_copy_tokenizer

        evals = self._user(traffic_cfg)
        seed = tables.frame([], tables.TRAINSET)
        if self.opts.seed_file:
            seed = self._labelled(self.opts.seed_file, "seed", "domain.toolcall.seed_file", traffic_cfg)
            seed = seed[EvalRequests(evals["request"]).clean(seed["request"])]
            seed = seed.drop(columns="split").assign(generation=layout.SEED, source=tables.SEED, parent_id=None,
                                                     teacher="seed", judge="none")[tables.TRAINSET.names]
        texts = [t + " " + calls.render(calls.loads(label)) for t, label in zip(seed["request"], seed["label"])]
        if traffic_cfg.file:
            texts += list(self._traffic(traffic_cfg, evals)["request"].head(traffic_cfg.rows))
        names = " ".join([*self.toolset.functions, *(a.name for f in self.toolset.functions.values() for a in f.args),
                          *(w for ws in self.toolset.enum_words.values() for w in ws), "true false none ( ) = , ;",
                          *(f"<{k.upper()}>" for k in self.redactor(traffic_cfg).patterns)])
        texts += [names] * self.opts.vocab_min_count  # the calls' own words are always tokens
        return Prepared(evals, seed.reset_index(drop=True), train_copy_tokenizer(texts, self.opts.vocab_min_count))

    def _labelled(self, name: str, split: str, key: str, traffic_cfg) -> pd.DataFrame:
        """A file of labelled requests, redacted like traffic (the request and the labels'
        text values alike, so a placeholder in one is the same placeholder in the other)."""
        redacts = bool(traffic_cfg.file or self.own_catalog)
        red = self.redactor(traffic_cfg)
        rows = sets.labelled_set(self.path / name, split, self.toolset, key=key, redactor=red if redacts else None)
        if not redacts:
            return rows
        rows["request"] = [red(t) for t in rows["request"]]
        rows["label"] = [calls.dumps(calls.map_strings(calls.loads(label), red)) for label in rows["label"]]
        rows["id"] = [tables.row_id(r, label) for r, label in zip(rows["request"], rows["label"])]
        return rows

    def _user(self, traffic_cfg):
        return self._labelled(self.opts.user_file, "user", "domain.toolcall.user_file", traffic_cfg)

    def check_files(self, traffic_cfg) -> None:
        self.toolset
        evals = self._user(traffic_cfg)
        if traffic_cfg.file:
            self._traffic(traffic_cfg, evals)

    def label_format(self) -> str:
        return "json"

    def generate(self, plan, pool, *, generation, gate, rng, teacher: Teacher, cfg, rubric, bar=None):
        twice = tuple(cfg.self_consistency)
        if teacher.client is None:
            return embedded(rng, plan, generation, gate=gate, error_rate=cfg.error_rate,
                            skill_error_rates=cfg.skill_error_rates, twice=twice)
        composed = plan[plan["kind"] != tables.TRAFFIC]
        drawn = logged(plan, gate) + ([] if self.own_catalog else draw(rng, composed, gate))
        rows, truth = with_model(teacher.client, teacher.template, drawn, generation, gate, bar, twice=twice,
                                 catalog=self.toolset)
        if self.own_catalog:
            new = written(teacher.client, teacher.writer, composed, pool, generation, gate, self.toolset, rng, bar,
                          twice=twice)
            rows = pd.concat([rows, new], ignore_index=True)
        return rows, truth

    def target(self, label: str) -> str:
        return calls.render(calls.loads(label))

    def chat_tools(self) -> list:
        return self.toolset.tools()

    def chat_target(self, label: str) -> str:
        """The calls as JSON, non-ASCII characters as they are ("Zürich", not "Z\\u00fcrich"),
        as tool-calling models write them."""
        import json

        return json.dumps(calls.loads(label), ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    def from_chat(self, text: str) -> str:
        """The JSON list of calls a chat student writes, rendered as the built-in student's
        answers are; anything but exactly one JSON value of calls is unreadable ("")."""
        import json

        try:
            return calls.render(calls.loads(calls.canonical(json.loads(text))))
        except (ValueError, TypeError):
            return ""

    def skills(self, seen: pd.Series | None = None) -> list[str]:
        skills = self.toolset.skills
        extra = sorted({s for row in seen for s in row} - set(skills)) if seen is not None else []
        return list(skills) + extra

    def score(self, labels: list[str], outputs: list[str]) -> list[bool]:
        return self.score_with(labels, outputs, None)

    def score_with(self, labels: list[str], outputs: list[str], contexts: list | None) -> list[bool]:
        """BFCL's rules (calls.accepts), each row against its own tools where it came with
        some (domain.score_rows)."""
        cats = [self.catalog_of(c) for c in contexts] if contexts is not None else [self.toolset] * len(labels)
        return [calls.accepts(self._parse(o, cat), calls.loads(label), cat)
                for o, label, cat in zip(outputs, labels, cats)]

    def deployed_answer(self, output: str) -> str:
        parsed = self._parse(output)
        return calls.dumps(parsed) if parsed is not None else ""

    def functions(self, label: str) -> list[str]:
        return [c["name"] for c in calls.loads(label)]

    def missing(self, output: str, label: str) -> list[str]:
        return embedded_judge.diagnose(self._parse(output), calls.loads(label), self.toolset)

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
            return calls.canonical(value)
        except ValueError:
            return None

    def passes(self, label: str, request: str) -> bool:
        return self.passes_with(label, request, None)

    def passes_with(self, label: str, request: str, context: str | None) -> bool:
        """`passes`, against the tools the row's request offered where it came with some."""
        return not check(request, calls.loads(label), self.catalog_of(context))

    def first_verdicts(self, rows: pd.DataFrame, outputs: list[str] | None, *, use_repair: bool) -> pd.DataFrame:
        """The verifier cascade and the student; rows without a label are `teacher_error`."""
        out = rows.copy()
        results = []
        contexts = rows["context"] if "context" in rows else [None] * len(rows)
        for i, (request, label, error, context) in enumerate(zip(rows["request"], rows["label"], rows["error"],
                                                                 contexts)):
            if error:
                results.append(embedded_judge.Verdict(TEACHER_ERROR, error, None))
                continue
            cat = self.catalog_of(context)  # a logged request: the tools it offered, no other
            answer = self._parse(outputs[i], cat) if outputs is not None else None
            results.append(embedded_judge.verdict(request, calls.loads(label), answer, use_repair=use_repair,
                                                  catalog=cat))
        out["student_output"] = outputs if outputs is not None else ""
        out["verdict"] = [r.verdict for r in results]
        out["reason"] = [r.reason for r in results]
        out["final_label"] = [None if r.final_label is None else calls.dumps(r.final_label) for r in results]
        out["judge"] = "embedded"
        out["agreement"] = None
        return out

    def undecided(self, verdicts: pd.DataFrame) -> pd.Series:
        """A label that passes every check without the student's agreement (swapped
        arguments pass every check), and a wrong label the verifier could not repair."""
        unconfirmed = (verdicts["verdict"] == LABEL_OK) & ~verdicts["reason"].str.contains(embedded_judge.AGREES)
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
        report = embedded_judge.quality(verdicts[known], truth)
        if not known.all():
            report["verdicts"] = counts
            report["rows_without_truth"] = int((~known).sum())
        return report
