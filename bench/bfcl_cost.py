"""What BFCL as an evaluation suite costs (docs/bfcl.md, "Its cost").

    python -m bench.bfcl_cost          # writes bench/bfcl_cost.json (about a minute)

- import: `flywheel.bfcl._bfcl()` (BFCL's checker, its tool conversion, no provider SDK)
  in a fresh interpreter that has imported the project's modules, median of 5;
- reading: every single-turn category's questions and possible answers, and the catalog
  loader over each question's tools (`readable`);
- checking: BFCL's checker on every readable question's gold answer, per question;
- answering: a tiny Hugging Face student (bench/hf_models.py, 2 layers of width 64) on the
  tests' sample, 2 questions per category, with each question's turns and tools: the
  part of evaluate's time that grows with the student (a 135M student answers about 2
  questions a second on 2 cores, docs/student.md).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT, commit, cpu_model

OUT = ROOT / "bench" / "bfcl_cost.json"


_IMPORT = ("import time; import flywheel.toolcall.calls, flywheel.bfcl as b; t = time.perf_counter(); b._bfcl(); "
           "print(time.perf_counter() - t)")


def _import_s(runs: int = 5) -> float:
    """`_bfcl()` in a fresh interpreter (the project's own modules already imported), median of `runs`."""
    out = [float(subprocess.run([sys.executable, "-c", _IMPORT], check=True, cwd=ROOT, capture_output=True,
                                text=True).stdout.split()[-1]) for _ in range(runs)]
    return statistics.median(out)


def measure() -> dict:
    from flywheel import bfcl
    from flywheel.toolcall import calls

    imported = _import_s()
    start = time.perf_counter()
    qs = [q for c in bfcl.CATEGORIES for q in bfcl.questions(c)]
    readable = [q for q in qs if bfcl.readable(q)]
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    for q in readable:
        bfcl.check(q, [{"name": c["name"], "arguments": c["arguments"]} for c in calls.loads(bfcl.label(q))])
    check_s = time.perf_counter() - start
    return {"commit": commit(), "cpu": cpu_model(), "bfcl_eval": bfcl._bfcl().version,
            "import_s": round(imported, 3),
            "questions": len(qs), "readable": len(readable), "read_s": round(read_s, 2),
            "check_ms_per_question": round(1000 * check_s / len(readable), 3), "answer": _answer()}


def _answer() -> dict:
    from bench.hf_models import tiny_llama
    from flywheel import bfcl, domain
    from flywheel.config import DomainConfig, StudentConfig
    from flywheel.student.hf import HFStudent

    qs = bfcl.sample(list(bfcl.CATEGORIES), 2, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        base = tiny_llama(Path(tmp) / "tiny", [bfcl.request(q) for q in qs] + [json.dumps(q["tools"]) for q in qs])
        dom = domain.get(DomainConfig())
        (Path(tmp) / "manifest").mkdir()
        HFStudent.untrained(StudentConfig(model=str(base)), dom, Path(tmp) / "manifest")
        student = HFStudent.load(Path(tmp) / "manifest", dom)
        start = time.perf_counter()
        answers = bfcl.answer(student, qs, batch_size=32, max_new_tokens=48)
        seconds = time.perf_counter() - start
    per = bfcl.scored(qs, answers)
    return {"student": "tiny Llama, 2 layers of width 64, untrained", "questions": len(qs),
            "seconds": round(seconds, 2), "right": sum(r for r, _ in per.values())}


def main() -> None:
    result = measure()
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
