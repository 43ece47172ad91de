"""A catalog from a file: the shipped catalog is one, a catalog from
another field loads into the same verifier, scorer, skills and student prompts, and a bad
file is refused in one line naming the function and field, before anything is written."""

from __future__ import annotations

import copy
import random
import sys
import types
from pathlib import Path

import pytest

from catalogs import LIBRARY, write_library
from conftest import SMALL, free_port, make_project, merge, run
import pandas as pd

from flywheel import domain, store, tables
from flywheel.config import DomainConfig
from flywheel.toolcall import calls
from flywheel.toolcall import catalog
from flywheel.toolcall import embedded_judge, phrasings, sets
from flywheel.toolcall.verifier import check, repair

FLYWHEEL = str(Path(sys.executable).parent / "flywheel")


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return write_library(tmp_path_factory.mktemp("catalog"))


def _library_domain(path: Path):
    return domain.get(DomainConfig(path=str(path.parent), toolcall={"tools": path.name}))


def call(fn: str, /, **arguments) -> dict:
    return {"name": fn, "arguments": arguments}


def test_the_shipped_catalog_is_a_file_the_loader_reads():
    shipped = catalog.load(catalog.SHIPPED_FILE)
    assert list(shipped.functions) == list(phrasings.FUNCTIONS) and len(shipped.functions) == 12
    assert shipped.skills == phrasings.SKILLS and "relative_dates" in shipped.skills and "weather" in shipped.skills
    assert shipped.functions["create_event"].arg("date").type == catalog.DATE
    assert shipped.enum_words["gbp"][0] == "gbp" and "quid" in shipped.enum_words["gbp"]
    dom = domain.get(DomainConfig())
    assert dom.toolset is catalog.shipped() is phrasings.CATALOG and dom.chat_tools() == catalog.shipped().tools()



def test_the_answer_schema_takes_every_true_label_and_refuses_what_the_catalog_lacks():
    import json

    import jsonschema

    check_answer = jsonschema.Draft202012Validator(calls.answer_schema(catalog.shipped()))
    rng = random.Random(5)  # the embedded generator's true calls, every skill (the seed's labels come from it)
    labels = [calls.dumps(phrasings.make_request(rng, phrasings.spec_for_skill(rng, skill)).calls)
              for skill in phrasings.SKILLS for _ in range(20)]
    bad = [label for label in labels if not check_answer.is_valid(json.loads(label))]
    assert not bad and len(labels) > 100 and any(label != "[]" for label in labels)
    assert check_answer.is_valid([])  # no call
    for wrong in ([call("get_temperature", city="Oslo")],  # a function the catalog does not have
                  [call("convert_currency", amount=5.0, from_currency="chf")],  # a required argument left out
                  [call("convert_currency", amount=5.0, from_currency="chf", to_currency="zzz")],  # not in its enum
                  [{"name": "convert_currency"}]):
        assert not check_answer.is_valid(wrong), wrong

def test_a_catalog_from_another_field_gives_its_own_types_and_skills(library):
    cat = catalog.load(library)
    assert len(cat.functions) == 9
    room = cat.functions["reserve_room"]
    assert [(a.name, a.type, a.required) for a in room.args] == [
        ("room", catalog.ENUM, True), ("date", catalog.DATE, True), ("start", catalog.TIME, True), ("hours", catalog.INT, False)]
    assert cat.functions["pay_fine"].arg("amount").type == catalog.NUMBER
    assert cat.functions["register_member"].arg("student").type == catalog.BOOL
    # one skill per function, then the cross-cutting ones that fit any schema
    assert cat.skills == tuple(sorted(f["function"]["name"] for f in LIBRARY)) + catalog.GENERIC_SKILLS
    assert "media lab" in cat.words_for("media_lab") and "credit card" in cat.words_for("card")
    dom = _library_domain(library)
    assert dom.skills() == list(cat.skills)
    assert sets.skills_of("renew loan 4521 for 2 weeks", [call("renew_loan", loan_id=4521, weeks=2)], cat) == \
        ["optional_args", "renew_loan"]
    assert sets.skills_of("fiction news", [call("list_new_arrivals", genre="fiction"),
                                           call("find_book", title="news")], cat) == \
        ["enums", "find_book", "list_new_arrivals", "two_calls"]


def test_the_verifier_checks_schema_types_enums_and_grounding_from_the_file(library):
    cat = catalog.load(library)
    request = "pay the 12.50 fine in cash please"
    assert check(request, [call("pay_fine", amount=12.5, method="cash")], cat) == []
    ungrounded = check(request, [call("pay_fine", amount=12.5, method="voucher")], cat)
    assert ungrounded and ungrounded[0].startswith("grounding: pay_fine.method")
    outside = check(request, [call("pay_fine", amount=12.5, method="bitcoin")], cat)
    assert outside and outside[0].startswith("type: pay_fine.method='bitcoin'")
    assert check(request, [call("pay_fine", amount=99, method="cash")], cat)[0].startswith("grounding: pay_fine.amount")
    assert check(request, [call("get_weather", city="Paris")], cat)[0].startswith("schema: unknown function")
    assert check("renew loan 4521", [call("renew_loan")], cat) == ["schema: renew_loan misses required 'loan_id'"]
    # an enum's other words (x-words) and its spaced form ground it; a boolean by its words
    assert check("pay 5 by credit card", [call("pay_fine", amount=5, method="card")], cat) == []
    assert check("book the media lab tomorrow at 14:00", [call("reserve_room", room="media_lab", date="tomorrow",
                                                                  start="14:00")], cat) == []
    assert check("urgent: where are the maps?", [call("ask_librarian", question="where are the maps", urgent=True)],
                 cat) == []
    assert check("sign up Ada", [call("register_member", name="Ada", student=True)], cat)[0].startswith(
        "grounding: register_member.student")
    # the repair takes the one candidate the request offers
    assert repair(request, [call("pay_fine", amount=12.5, method="voucher")], cat) == \
        [call("pay_fine", amount=12.5, method="cash")]
    # the judge's diagnosis names the catalog's skills, never the shipped catalog's
    wrong = embedded_judge.diagnose([call("pay_fine", amount=12.5, method="card")], [call("pay_fine", amount=12.5,
                                                                                method="cash")], cat)
    assert wrong == ["enums"]


def test_json_schema_habits_a_catalog_may_have(tmp_path):
    """An enum without a type, an ISO date, an enum value in capitals; OpenAI's names (a dash)."""
    tools = [{"name": "book_desk", "parameters": {"type": "object", "required": ["desk", "day"], "properties": {
        "desk": {"enum": ["A1", "B2"]}, "day": {"type": "string", "format": "date"}}}}]
    cat = catalog.load(write_library(tmp_path, "desk.yaml", tools))
    assert cat.functions["book_desk"].arg("desk").type == catalog.ENUM
    label = [call("book_desk", desk="A1", day="2026-12-05")]
    assert check("book desk a1 on 2026-12-05", label, cat) == []
    assert check("book desk a1 on december 5, 2026", label, cat) == []
    assert check("book desk a1 on december 6, 2026", label, cat)[0].startswith("grounding: book_desk.day")
    assert calls.parse("book_desk ( day = 2026-12-05 , desk = a1 )".split(), cat) == label  # the catalog's case
    dashed = catalog.load(write_library(tmp_path, "dash.yaml", [{"name": "book-desk", "parameters": {}}]))
    assert dashed.functions["book-desk"].family == "book_desk"
    with pytest.raises(store.DataError, match="name 'book.desk' is not a function name"):
        catalog.load(write_library(tmp_path, "dot.yaml", [{"name": "book.desk", "parameters": {}}]))


def test_the_scorer_matches_calls_typed_by_the_new_schema(library):
    dom = _library_domain(library)
    label = calls.dumps([call("renew_loan", loan_id=4521, weeks=2)])
    out = calls.render(calls.loads(label))
    assert out == "renew_loan ( loan_id = 4521 , weeks = 2 )"
    assert calls.parse(out.split(), dom.toolset) == [call("renew_loan", loan_id=4521, weeks=2)]
    assert dom.score([label, label, label], [out, "renew_loan ( weeks = 2 , loan_id = 4521 )",
                                             "renew_loan ( loan_id = 4512 , weeks = 2 )"]) == [True, True, False]
    # the same tokens under the shipped catalog's types (no such function) read as what they look like
    assert calls.parse(out.split(), phrasings.CATALOG) == [call("renew_loan", loan_id=4521, weeks=2)]
    assert calls.parse("f ( a = 12 , b = 2.5 , c = x y , d = [ 1 , 2 ] , e = { k = true } )".split(),
                       phrasings.CATALOG) == [call("f", a=12, b=2.5, c="x y", d=[1, 2], e={"k": True})]
    assert dom.missing("renew_loan ( loan_id = 4512 )", label) == ["optional_args", "renew_loan"]


def test_a_student_of_your_own_is_prompted_with_the_new_tools(library, tmp_path):
    from bench.hf_models import tiny_llama
    from flywheel.student import hf
    from flywheel.config import StudentConfig

    dom = _library_domain(library)
    tools = dom.chat_tools()
    assert [t["function"]["name"] for t in tools] == [f["function"]["name"] for f in LIBRARY]
    room = next(t["function"] for t in tools if t["function"]["name"] == "reserve_room")
    assert room["description"] == "Reserve a study room"
    assert room["parameters"]["properties"]["room"]["enum"] == ["quiet", "group", "media_lab"]
    assert room["parameters"]["required"] == ["room", "date", "start"]
    tiny_llama(tmp_path / "base", ["reserve the quiet room", "find a book"])
    (tmp_path / "student").mkdir()
    cfg = StudentConfig(model=str(tmp_path / "base"), max_length=256)
    hf.HFStudent.untrained(cfg, dom, tmp_path / "student")
    st = hf.HFStudent.load(tmp_path / "student", dom)
    prompt = st.tok.decode(st.prompt_ids("reserve the quiet room tomorrow at 9:00"))
    assert "reserve_room" in prompt and "extend_membership" in prompt and "get_weather" not in prompt


def _broken(change) -> list:
    tools = copy.deepcopy(LIBRARY)
    change(tools)
    return tools


def _props(tools, name):
    return next(t for t in tools if t["function"]["name"] == name)["function"]["parameters"]


# (case, the file's text or tools, what the one line names)
BAD = [
    ("unknown type", _broken(lambda t: _props(t, "find_book")["properties"].update(tags={"type": "list"})),
     "find_book.tags: unknown type 'list'"),
    ("array without items", _broken(lambda t: _props(t, "find_book")["properties"].update(tags={"type": "array"})),
     "find_book.tags: an array without items is not supported"),
    ("a union of schemas", _broken(lambda t: _props(t, "find_book")["properties"].update(
        tags={"anyOf": [{"type": "string"}, {"type": "integer"}]})), "find_book.tags: anyOf is not supported"),
    ("a list of types", _broken(lambda t: _props(t, "find_book")["properties"].update(tags={"type": ["string", "null"]})),
     "find_book.tags: a list of types ['string', 'null'] is not supported"),
    ("enum on an array", _broken(lambda t: _props(t, "find_book")["properties"].update(
        tags={"type": "array", "items": {"type": "string"}, "enum": [["a"]]})),
     "find_book.tags: enum on an array is not supported"),
    ("enum empty", _broken(lambda t: _props(t, "pay_fine")["properties"]["method"].update(enum=[])),
     "pay_fine.method: enum is empty"),
    ("enum value not of the type", _broken(lambda t: _props(t, "renew_loan")["properties"]["weeks"].update(
        enum=[1, 2.5])), "renew_loan.weeks: enum value 2.5 is not of type integer"),
    ("nested field", _broken(lambda t: _props(t, "find_book")["properties"].update(filters={
        "type": "object", "properties": {"year": {"type": "integer", "enum": ["1999"]}}})),
     "find_book.filters.year: enum value '1999' is not of type integer"),
    ("duplicate name", _broken(lambda t: t.append(copy.deepcopy(t[0]))), "find_book: duplicate function name"),
    ("required argument not in properties", _broken(lambda t: _props(t, "renew_loan")["required"].append("branch")),
     "renew_loan: required argument 'branch' is not in properties"),
    ("function name with a space", _broken(lambda t: t[8]["function"].update(name="extend membership")),
     "tool 9: name 'extend membership' is not a function name"),
    ("parameters not an object", _broken(lambda t: t[1]["function"].update(parameters={"type": "array"})),
     "renew_loan: parameters must be a JSON Schema of type object"),
    ("not a list of tools", {"functions": []}, "not a list of tools"),
    ("not YAML", "- name: [find_book\n", "not valid yaml"),
]


@pytest.mark.parametrize("case,content,names", BAD, ids=[b[0] for b in BAD])
def test_a_bad_catalog_is_one_line_naming_function_and_field(tmp_path, case, content, names):
    path = tmp_path / "library.yaml"
    if isinstance(content, str):
        path.write_text(content)
    else:
        write_library(tmp_path, tools=content)
    with pytest.raises(store.DataError) as err:
        catalog.load(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)) and names in message, message


def test_a_missing_catalog_file_is_named(tmp_path):
    with pytest.raises(store.DataError, match=r"nothere\.json: not found \(domain\.toolcall\.tools\)"):
        catalog.load(tmp_path / "nothere.json")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.parts and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A catalog of your own with a teacher model (on a port nothing listens on: the
    checks refuse the file before any connection is tried)."""
    teacher = {"backend": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "teacher"}
    return make_project(tmp_path_factory.mktemp("bad-catalog"),
                        merge(SMALL, {"domain": {"toolcall": {"tools": "library.yaml"}}, "generate": {"teacher": teacher}}),
                        git=False)


@pytest.mark.parametrize("case,content,names", BAD, ids=[b[0] for b in BAD])
def test_flywheel_run_refuses_a_bad_catalog_before_writing_anything(workspace, case, content, names):
    folder = workspace / "domains" / "toolcall"
    if isinstance(content, str):
        (folder / "library.yaml").write_text(content)
    else:
        write_library(folder, tools=content)
    before = _snapshot(workspace)
    proc = run([FLYWHEEL, "run"], workspace, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error:") and names in lines[0], proc.stderr[-2000:]
    print(f"BADCATALOG {case} => {lines[0]}")
    assert _snapshot(workspace) == before, f"{case}: the workspace changed"


def test_a_catalog_of_your_own_with_the_embedded_teacher_is_refused_with_the_reason(library):
    from flywheel.config import ConfigError

    with pytest.raises(ConfigError, match=r"generate.teacher: .* \(a catalog of your own \(domain.toolcall.tools\): the embedded "
                                          r"teacher knows only the shipped catalog"):
        domain.require_teacher(_library_domain(library), "embedded")
    domain.require_teacher(domain.get(DomainConfig()), "embedded")  # the shipped catalog: fine


def test_a_teachers_unreadable_or_unknown_answers_are_counted_not_raised(library):
    """The request writer for a catalog of your own: an answer that is not JSON counts as
    `unreadable` in the gate, one calling a function the catalog lacks is kept for the
    judge to drop (its skills: none it could show), a good one is admitted."""
    from flywheel.backends.client import Answer
    from flywheel.gate import Gate
    from flywheel.toolcall import teacher

    cat = catalog.load(library)
    good = '{"request": "renew loan 4521 for 2 weeks", "calls": [{"name": "renew_loan", ' \
           '"arguments": {"loan_id": 4521, "weeks": 2}}]}'
    texts = ["I cannot help with that", good, '{"request": "order a pizza", "calls": [{"name": "order_pizza"}]}']

    class Client:
        name = "teacher"

        def ask(self, prompts, parse, on_done=None, sample=0):
            out = []
            for text in texts[: len(prompts)]:
                try:
                    out.append(Answer(parse(text), text))
                except ValueError as exc:
                    out.append(Answer(None, text, str(exc)))
            return out

    plan = pd.DataFrame([tables.plan_row(None, ["renew_loan"], ["renew_loan"], "random") for _ in texts])
    template = types.SimpleNamespace(render=lambda **kw: "write one", version="t1")
    gate = Gate(set(), set())
    rows = teacher.written(Client(), template, plan, pd.DataFrame({"request": [], "label": []}), "gen-001", gate,
                           cat, random.Random(0), twice=())
    assert gate.refused["unreadable"] == 1
    assert list(rows["request"]) == ["renew loan 4521 for 2 weeks", "order a pizza"]
    assert list(rows["skills"])[1] == []
