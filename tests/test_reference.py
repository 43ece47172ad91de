"""The tiny reference: the session's shared workspace (tests/conftest.py `SHARED`, two
generations made by the Prefect flow) must write the very bytes that
tests/reference/small_run.json records, on whatever CPU runs the suite. The file was made
with the pinned kernels (flywheel/kernels.py) on the CPU it names; when the CPU running
the suite is another one, this test is the proof that the pin holds across CPUs.

The md5s are taken from the `gen-001` tag the flow committed (the lock as the flow left
it, before any other test touched the workspace). The CPU the check ran on is printed in
the run's summary (conftest.py `pytest_terminal_summary`).

To remake the file (after a change that changes the bytes on purpose):
`FLYWHEEL_WRITE_REFERENCE=1 .venv/bin/python -m pytest tests/test_reference.py`.
"""

from __future__ import annotations

import json
import os
import subprocess

import yaml

from conftest import ROOT, SHARED

REFERENCE = ROOT / "tests" / "reference" / "small_run.json"
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")


def cpu() -> dict:
    """The CPU as lscpu names it, and which of the instruction sets that matter it has."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    model = fields.get("Model name", "unknown").strip()
    flags = set(fields.get("Flags", "").split())
    return {"model": model, "vendor": fields.get("Vendor ID", "").strip(),
            "isa": [f for f in ISA_FLAGS if f in flags]}


def committed_md5s(project) -> dict[str, str]:
    lock = subprocess.run(["git", "show", "gen-001:dvc.lock"], cwd=project, capture_output=True, text=True,
                          check=True).stdout
    stages = yaml.safe_load(lock)["stages"]
    return {o["path"]: o["md5"] for s in stages.values() for o in s.get("outs", [])}


def test_small_run_writes_the_reference_bytes(small_run, record_property):
    project, _ = small_run
    md5s, here = committed_md5s(project), cpu()
    if os.environ.get("FLYWHEEL_WRITE_REFERENCE") == "1":
        REFERENCE.write_text(json.dumps({"config": SHARED, "made_on": here, "md5s": md5s}, indent=1) + "\n")
    ref = json.loads(REFERENCE.read_text())
    assert ref["config"] == json.loads(json.dumps(SHARED)), "tests/conftest.py SHARED changed: remake the reference"
    differ = sorted(p for p in md5s.keys() | ref["md5s"].keys() if md5s.get(p) != ref["md5s"].get(p))
    record_property("reproducibility", f"tiny reference made on {ref['made_on']['model']} "
                    f"({', '.join(ref['made_on']['isa'])}); checked on {here['model']} ({', '.join(here['isa'])}): "
                    + ("the same bytes" if not differ else f"{len(differ)} of {len(md5s)} outputs differ"))
    assert not differ, f"outputs that differ from tests/reference/small_run.json: {differ}"
