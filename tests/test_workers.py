"""The two-worker scheduler (tests/conftest.py) reads a test file's text to find the
shared session workspace it uses. Checked here against pytest's own fixture closure of
every collected test: a test that needs `small_run` or `unkilled_run`, directly or
through another fixture, must sit in that fixture's unit, or a second worker would build
the workspace again."""

from __future__ import annotations

import pytest

from conftest import SHARED_FIXTURES, worker_unit


def test_every_test_of_a_shared_workspace_is_in_its_unit(request):
    items = [item for item in request.session.items if item.nodeid != request.node.nodeid]
    users = {unit: [item for item in items if unit in item.fixturenames] for unit in SHARED_FIXTURES}
    if not any(users.values()):
        pytest.skip("no collected test uses a shared workspace (run with the whole suite)")
    for unit, needing in users.items():
        astray = sorted({item.nodeid.split("::", 1)[0] for item in needing
                         if worker_unit(item.nodeid) != unit})
        assert not astray, f"{astray} use {unit} but the scheduler would not keep them with it"


def test_files_go_with_the_shared_workspace_they_name_or_alone():
    assert worker_unit("tests/test_stages.py") == "tests/test_stages.py"
    assert worker_unit("tests/test_deploy.py") == worker_unit("tests/reliability/test_disk_full.py") == "small_run"
