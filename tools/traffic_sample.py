"""Write the traffic sample of docs/your-tools.md's worked example.

`python -m tools.traffic_sample` writes logs/traffic_sample.jsonl (300 logged
requests: `request`, `timestamp`, `response`) and bench/traffic_truth.jsonl
(their calls, which only the stand-in teacher of bench/llm_server.py reads; a real teacher
model labels the requests without them). The requests come from the embedded request
generator (its seed phrasings and training values), one in ten with a made-up e-mail
address, phone, card or IBAN appended, as logs hold them; the truth is keyed by the
request as redaction leaves it, since that is what the teacher receives.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

from flywheel.redact import DEFAULT_PATTERNS, Redactor
from flywheel.toolcall import phrasings
from flywheel.toolcall.phrasings import SKILLS

ROOT = Path(__file__).resolve().parents[1]

CONTACTS = ["my email is sam.river@example.net", "call me on +1 415 555 0199", "card 5555 5555 5555 4444",
            "account NL91 ABNA 0417 1643 00"]


def main(n: int = 300, seed: int = 26) -> None:
    rng = random.Random(seed)
    start = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc)
    redact = Redactor(dict(DEFAULT_PATTERNS))
    logged, truth = [], []
    for i in range(n):
        req = phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)]), phrasing_sets=("seed",))
        text = req.text + (f", {CONTACTS[(i // 10) % len(CONTACTS)]}" if i % 10 == 5 else "")
        logged.append({"request": text, "timestamp": (start + dt.timedelta(minutes=11 * i)).isoformat(),
                       "response": ""})
        truth.append({"request": " ".join(redact(text).split()), "calls": req.calls})
    written = (ROOT / "logs" / "traffic_sample.jsonl", logged), (ROOT / "bench" / "traffic_truth.jsonl", truth)
    for path, rows in written:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{n} requests -> {written[0][0]}, {written[1][0]}")


if __name__ == "__main__":
    main()
