"""dvc.yaml's declarations are checked, not promised.

- Every stage's `deps` cover every project file it imports, transitively, function-level
  imports included (they run when the stage does): derived here from the modules' own
  import statements, so a new import without a new dep fails this file.
- Every code dependency's md5 in the committed dvc.lock is the file's (directory's) md5
  as DVC computes it, so a fresh clone's `dvc status` after `dvc pull` is clean.
- Imports run one way: flywheel/ never imports tasks/ or flows/, and no stage imports
  another stage.
(The params side is checked at run time: each stage's `main` gets a config.ConfigView
that refuses a section or key its dvc.yaml entry does not declare; test_config_and_store.)
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

PACKAGES = ("flywheel", "tasks", "flows")


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_files(path: Path) -> set[Path]:
    """Project files `path` imports directly (module level or inside functions), with the
    `__init__.py` of every package on the way (Python runs them too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for t in ast.walk(tree) if _type_checking(t) for n in ast.walk(t)}
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}  # `from flywheel import domain`: a submodule
    out = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            found = _module_file(".".join(parts[:i]))
            if found is not None:
                out.add(found)
    return out


REGISTRIES = {"flywheel/domain.py": "flywheel.domains", "flywheel/student/__init__.py": "flywheel.students"}


def entry_point_files(group_name: str) -> set[Path]:
    """The modules pyproject.toml's entry points of `group_name` name: the registry that
    loads them (REGISTRIES) runs them wherever it runs."""
    import tomllib

    group = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][group_name]
    out = set()
    for target in group.values():
        module = target.split(":")[0]
        for i in range(1, len(module.split(".")) + 1):
            found = _module_file(".".join(module.split(".")[:i]))
            if found is not None:
                out.add(found)
    return out


def closure(path: Path) -> set[Path]:
    """Every project file that runs when the stage `path` does (`python -m tasks <stage>`:
    the package, its launcher and the stage module), with the registries and the
    built-in domains and students their entry points load."""
    todo, seen = [path, path.parent / "__init__.py", path.parent / "__main__.py"], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += sorted(imported_files(current) - seen)
        group = REGISTRIES.get(current.relative_to(ROOT).as_posix())
        if group:
            todo += sorted(entry_point_files(group) - seen)
    return seen


DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_entry(name: str) -> dict:
    return DVC[name].get("do", DVC[name])


INPUTS = ("data/", "${", "models", "logs")  # data, the domain's folder, a base model of your own, request logs: inputs, not code


def code_deps(entry: dict) -> list[str]:
    return [d for d in entry.get("deps", []) if not d.startswith(INPUTS)]


def uncovered(files: set[Path], deps: list[str]) -> list[str]:
    rel = sorted(str(f.relative_to(ROOT)) for f in files)
    return [f for f in rel if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]


@pytest.mark.parametrize("name", sorted(DVC))
def test_deps_cover_every_file_the_stage_imports(name):
    missing = uncovered(closure(ROOT / "tasks" / f"{name}.py"), code_deps(stage_entry(name)))
    assert not missing, f"dvc.yaml: stage {name} imports {missing} but does not list them in its deps"


def test_the_check_finds_a_removed_dependency():
    """The check bites: the train stage without flywheel/student in its deps is caught."""
    deps = [d for d in code_deps(stage_entry("train")) if d != "flywheel/student"]
    assert "flywheel/student/builtin.py" in uncovered(closure(ROOT / "tasks" / "train.py"), deps)


def test_code_deps_are_code_the_stage_uses():
    """No dep is listed that the stage never imports (it would rerun the stage for nothing)."""
    for name in DVC:
        files = {str(f.relative_to(ROOT)) for f in closure(ROOT / "tasks" / f"{name}.py")}
        for dep in code_deps(stage_entry(name)):
            assert any(f == dep or f.startswith(dep.rstrip("/") + "/") for f in files), (name, dep)


def test_imports_run_one_way():
    for path in sorted((ROOT / "flywheel").rglob("*.py")):
        bad = [f for f in imported_files(path) if f.relative_to(ROOT).parts[0] in ("tasks", "flows")]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
    for path in sorted((ROOT / "tasks").glob("*.py")):
        others = [f for f in imported_files(path) if f.parent.name == "tasks" and f.name != "__init__.py"]
        assert not others, f"stage {path.name} imports another stage: {others}"


# -- the committed lock matches the code -----------------------------------------------------

IGNORED = ("__pycache__", ".pyc")  # .dvcignore


def dvc_md5(path: Path) -> str:
    """The md5 DVC records for a file, or for a directory (`<md5 of its listing>.dir`)."""
    if path.is_file():
        return hashlib.md5(path.read_bytes()).hexdigest()
    entries = []
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not any(i in str(p) for i in IGNORED)):
        entries.append({"md5": hashlib.md5(f.read_bytes()).hexdigest(), "relpath": f.relative_to(path).as_posix()})
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


LOCK = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]


def test_committed_lock_matches_the_code():
    stale = []
    for stage, entry in LOCK.items():
        for dep in entry.get("deps", []):
            path = ROOT / dep["path"]
            if dep["path"].startswith("data/") or not path.exists():
                continue
            if dvc_md5(path) != dep["md5"]:
                stale.append(f"{stage}: {dep['path']}")
    assert not stale, f"dvc.lock records other md5s than the code has (run `dvc repro` and commit): {stale}"


def test_committed_lock_records_every_declared_code_dependency():
    """A dep added to dvc.yaml but not yet in dvc.lock would make `dvc status` report the
    stage as changed on a fresh clone."""
    missing = []
    for stage, entry in LOCK.items():
        declared = code_deps(stage_entry(stage.split("@")[0]))
        recorded = {d["path"] for d in entry.get("deps", [])}
        missing += [f"{stage}: {d}" for d in declared if d not in recorded]
    assert not missing, f"dvc.lock lacks declared deps (run `dvc repro` or `dvc commit`): {missing}"


def test_no_import_circle_in_the_project():
    """No module imports one that imports it back, directly or around a circle, at module
    level or inside a function (the domain registry loads its implementations by entry
    point, so it does not import them)."""
    files = [p for d in ("flywheel", "tasks", "flows", "bench", "experiments", "tools") for p in sorted((ROOT / d).rglob("*.py"))
             if "__pycache__" not in p.parts]
    graph = {f: {g for g in imported_files(f) if g != f and g.name != "__init__.py"} for f in files}
    state: dict[Path, int] = {}
    path: list[Path] = []

    def visit(node: Path) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(str(p.relative_to(ROOT)) for p in circle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for f in files:
        if f not in state:
            visit(f)
