"""Disk full while a stage writes: the generation's directory is a tiny tmpfs (in a
private mount namespace, so nothing outside the test sees it) holding the stage's
previous outputs and a filler that leaves 4 KiB free. The stage fails with one line and
exit status 2; its previous outputs are byte for byte what they were, and no temp file
is left behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import env

SCRIPT = r"""
import hashlib, json, os, shutil, subprocess, sys
ws, gen = sys.argv[1], sys.argv[2]
d = os.path.join(ws, "data", gen)
shutil.move(d, d + ".orig")
os.mkdir(d)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dk" % (sum(
    os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d + ".orig") for f in fs) // 1024 + 256), "tmpfs", d],
    check=True)
for name in os.listdir(d + ".orig"):
    src = os.path.join(d + ".orig", name)
    (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(d, name))
md5 = lambda: {f: hashlib.md5(open(os.path.join(d, f), "rb").read()).hexdigest()
               for f in sorted(os.listdir(d)) if os.path.isfile(os.path.join(d, f))}
free = os.statvfs(d).f_bavail * os.statvfs(d).f_frsize
with open(os.path.join(d, "filler"), "wb") as fh:
    fh.write(b"\0" * max(free - 4096, 0))
before = md5()
proc = subprocess.run([sys.executable, "-m", "tasks", "compose", gen], cwd=ws, capture_output=True, text=True)
print(json.dumps({"code": proc.returncode, "stderr": proc.stderr, "before": before, "after": md5(),
                  "files": sorted(os.listdir(d))}))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a private tmpfs")
def test_a_full_disk_fails_the_stage_cleanly_and_keeps_the_previous_output(small_project, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(small_project, ws, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", SCRIPT, str(ws),
                           "gen-000"], env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = [ln for ln in out["stderr"].splitlines() if ln.strip()]
    assert out["code"] == 2 and len(lines) == 1, out["stderr"]
    assert "No space left on device" in lines[0] and lines[0].startswith("error: compose:")
    assert out["after"] == out["before"]  # train.parquet and dev.parquet as they were
    assert not [f for f in out["files"] if f.endswith(".tmp")]
