"""The domain protocol and the stage's view of the config.

- Domains are registered by name and checked when registered; stages call the protocol.
- A third domain is a package of its own, found by entry point: `tests/domains/shout` runs through
  every stage of a generation without a line of it anywhere else.
- A stage reads only the params its dvc.yaml entry declares (config.ConfigView).
- Code defaults agree with params.yaml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SMALL, make_project, merge
from flywheel import config, domain, layout, store, tables
from flywheel.config import ConfigError, DomainConfig, load, stage_view

SHOUT = Path(__file__).parent / "domains" / "shout"


def _methods(**overrides):
    """A complete domain's methods (from the toolcall domain), some replaced."""
    toolcall = type(domain.get(DomainConfig()))
    body = {m: getattr(toolcall, m) for m in domain.PROTOCOL}
    return body | overrides


def test_registration_checks_the_contract():
    with pytest.raises(TypeError, match="does not implement score"):
        domain.register(type("NoScore", (domain.Domain,), {k: v for k, v in _methods().items() if k != "score"}
                             | {"name": "noscore", "metrics": ("exact",), "teacher_variables": frozenset()}))
    with pytest.raises(TypeError, match=r"score\(self, outputs\) does not match"):
        domain.register(type("BadScore", (domain.Domain,), _methods(score=lambda self, outputs: [])
                             | {"name": "badscore", "metrics": ("exact",), "teacher_variables": frozenset()}))
    with pytest.raises(TypeError, match="'metrics' must be"):
        domain.register(type("NoMetrics", (domain.Domain,), _methods()
                             | {"name": "nometrics", "metrics": (), "teacher_variables": frozenset()}))
    with pytest.raises(TypeError, match="the name 'toolcall' is taken"):
        domain.register(type("Other", (domain.Domain,), _methods()
                             | {"name": "toolcall", "metrics": ("ast",), "teacher_variables": frozenset()}))


def test_unknown_domain_and_unfit_metric_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"domain.name: 'vision' is not a domain \(llm, (shout, )?toolcall"):
        domain.get(DomainConfig(name="vision", path="nowhere", vision={}))
    with pytest.raises(ConfigError, match=r"domain.metric: 'exact' does not fit domain 'toolcall'"):
        domain.get(DomainConfig(metric="exact"))


def test_no_stage_tests_a_domains_name():
    """Stages call the protocol; none branches on which domain is running."""
    for path in sorted((ROOT / "tasks").glob("*.py")) + [ROOT / "flows" / "lineage.py", ROOT / "flows" / "report.py"]:
        text = path.read_text()
        assert "domain.name ==" not in text and '"toolcall"' not in text and '"llm"' not in text, path


def _view(stage: str, declared: list[str]):
    cfg = load(ROOT / "params.yaml")
    return config.ConfigView(cfg, config._tree(declared + list(config.ALWAYS)), stage)


def test_a_stage_reads_only_what_dvc_yaml_declares():
    view = stage_view(load(ROOT / "params.yaml"), "evaluate", ROOT / "dvc.yaml")
    assert view.judge.rubric == "rubric.md" and view.evaluate.batch_size > 0 and view.generation("gen-000")
    with pytest.raises(ConfigError, match=r"stage evaluate reads judge.calibration, which its dvc.yaml params do not "
                                          r"declare"):
        view.judge.calibration
    with pytest.raises(ConfigError, match="stage evaluate reads train"):
        view.train


def test_the_view_bites_when_a_declaration_is_removed():
    """generate without `judge.rubric` declared: the read a model teacher makes fails."""
    declared = [k for k in config.declared_params("generate", ROOT / "dvc.yaml") if k != "judge.rubric"]
    with pytest.raises(ConfigError, match="stage generate reads judge, which its dvc.yaml params do not declare"):
        _view("generate", declared).judge.rubric


def test_code_defaults_agree_with_params_yaml():
    """A key params.yaml sets has the same value as its code default (or no default)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg = config.Config.model_validate(raw)

    wrong = []

    def walk(model, values: dict, where: str):
        for name, field in type(model).model_fields.items():
            if name not in values:
                continue
            value = getattr(model, name)
            if isinstance(value, config.BaseModel) and isinstance(values[name], dict):
                walk(value, values[name], f"{where}{name}.")
                continue
            if field.is_required():
                continue
            default = field.get_default(call_default_factory=True)
            if isinstance(default, config.BaseModel):
                default = default.model_dump()
                value = value.model_dump() if isinstance(value, config.BaseModel) else value
            if default != value:
                wrong.append(f"{where}{name}: code default {default!r}, params.yaml {value!r}")

    walk(cfg, raw, "")
    assert not wrong


def test_a_plug_in_package_adds_a_domain_by_entry_point(tmp_path, monkeypatch):
    """`shout` is a package of its own (tests/domains/shout: pyproject.toml, one module,
    templates) that `make setup` installs with `pip install -e`. Nothing in the project
    names it: the registry finds it through the `flywheel.domains` entry point, and it
    runs every stage of a generation, each through its own dvc.yaml declarations."""
    import importlib
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group=domain.GROUP) if e.name == "shout"]
    assert ep.value == "flywheel_shout:Shout" and ep.dist.name == "flywheel-shout"
    for path in sorted(ROOT.glob("flywheel/**/*.py")) + sorted(ROOT.glob("tasks/*.py")) + sorted(ROOT.glob("flows/*.py")):
        assert "shout" not in path.read_text().lower(), path

    params = merge(SMALL, {"domain": {"name": "shout", "path": "domains/shout", "metric": "exact", "shout": {}},
                           "generations": {"gen-000": {"prev": "seed"}},
                           "prepare": {"seed_rows": 30, "eval_rows": 40, "plan_rows": 60},
                           "train": {"steps": 15}, "expand": {"budget": 60}})
    project = make_project(tmp_path / "p", params, git=False)
    shutil.copytree(SHOUT, project / "domains" / "shout", ignore=shutil.ignore_patterns("__pycache__", "*.py", "*.toml",
                                                                                        "*.egg-info"))
    assert not (project / "domains" / "shout" / domain.PLUGIN).exists()  # the templates only: no path plug-in
    monkeypatch.chdir(project)
    cfg = load(Path("params.yaml"))
    assert type(domain.check(cfg)).__name__ == "Shout"
    for stage in ("prepare", *layout.STAGES):
        task = importlib.import_module(f"tasks.{stage}")
        task.main(stage_view(cfg, stage), "" if stage == "prepare" else "gen-000")
    metrics = store.read_json(layout.path("gen-000", layout.METRICS))
    assert set(metrics["per_split"]) == {"short", "long"} and set(metrics["per_skill"]) == {"one_word", "many_words"}
    judge = store.read_json(layout.path("gen-000", layout.JUDGE_METRICS))
    assert judge["precision"] == 1.0 and judge["recall"] == 1.0 and judge["flagged"] > 0  # its checker is exact
    plan = store.read_table(layout.path("gen-000", layout.PLAN), tables.PLAN)
    assert len(plan) == 60 and (plan["functions"].map(len) == 0).all()

    from flows import report, results

    heads = report.columns([report.row(results.read(Path("."), cfg, "gen-000"))])
    assert {"split:short", "split:long", "judge_precision"} <= set(heads) and "split:seen" not in heads
