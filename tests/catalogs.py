"""A catalog from another field, built in the tests (not the shipped one): a public
library's desk, nine functions over every argument type the format has."""

from __future__ import annotations

from pathlib import Path

import yaml


def _fn(name: str, description: str, props: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description,
                                             "parameters": {"type": "object", "properties": props,
                                                            "required": required}}}


LIBRARY = [
    _fn("find_book", "Search the catalogue for a book", {
        "title": {"type": "string"}, "author": {"type": "string"}}, ["title"]),
    _fn("renew_loan", "Renew a loan by its number", {
        "loan_id": {"type": "integer"}, "weeks": {"type": "integer"}}, ["loan_id"]),
    _fn("reserve_room", "Reserve a study room", {
        "room": {"type": "string", "enum": ["quiet", "group", "media_lab"]},
        "date": {"type": "string", "format": "date"}, "start": {"type": "string", "format": "time"},
        "hours": {"type": "integer"}}, ["room", "date", "start"]),
    _fn("pay_fine", "Pay a fine", {
        "amount": {"type": "number"},
        "method": {"type": "string", "enum": ["card", "cash", "voucher"], "x-words": {"card": ["credit card"]}}},
        ["amount", "method"]),
    _fn("register_member", "Sign up a new member", {
        "name": {"type": "string"}, "student": {"type": "boolean", "x-words": ["student", "at university"]}},
        ["name"]),
    _fn("cancel_reservation", "Cancel a room reservation", {"reservation_id": {"type": "integer"}},
        ["reservation_id"]),
    _fn("list_new_arrivals", "New books in a genre", {
        "genre": {"type": "string", "enum": ["fiction", "history", "science", "poetry"]},
        "limit": {"type": "integer"}}, ["genre"]),
    _fn("ask_librarian", "Send a question to a librarian", {
        "question": {"type": "string"}, "urgent": {"type": "boolean"}}, ["question"]),
    _fn("extend_membership", "Extend a membership by some months", {"months": {"type": "integer"}}, ["months"]),
]


def write_library(folder: Path, name: str = "library.yaml", tools: list | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(LIBRARY if tools is None else tools, sort_keys=False))
    return path


# --- requests on the library's desk, with their calls (what the test server knows) -------

TITLES = ["the silent river", "a map of salt", "northern lights", "the glass orchard", "winter bees",
          "paper moons", "the last ferry", "iron and ink", "a quiet harbour", "seven bridges",
          "the clockmaker", "orchids at dawn", "stone soup", "the long table", "blue hour"]
AUTHORS = ["mira okafor", "jonas berg", "lena costa", "tomas riedl", "ana quiroga", "felix marr"]
NAMES = ["ada", "bruno", "chiara", "dmitri", "elif", "farah", "goran", "hana", "ivo", "jun"]
QUESTIONS = ["where are the atlases", "do you hold old newspapers", "can i print in colour",
             "is the reading room open late", "how do i scan a page", "can i borrow a laptop"]
ROOM_WORDS = {"quiet": "quiet room", "group": "group room", "media_lab": "media lab"}
GENRES = ["fiction", "history", "science", "poetry"]


def _one(rng, name: str) -> tuple[str, dict]:
    """A request that calls `name`, and the call."""
    if name == "find_book":
        title = rng.choice(TITLES)
        if rng.random() < 0.4:
            author = rng.choice(AUTHORS)
            return f"do you have {title} by {author}", {"title": title, "author": author}
        return rng.choice(["find the book {t}", "look up {t} for me", "is {t} in the catalogue"]).format(t=title), \
            {"title": title}
    if name == "renew_loan":
        loan = rng.randint(1000, 9999)
        if rng.random() < 0.5:
            weeks = rng.randint(1, 4)
            return f"please renew loan {loan} for {weeks} weeks", {"loan_id": loan, "weeks": weeks}
        return rng.choice(["renew loan {n}", "can you renew my loan {n}"]).format(n=loan), {"loan_id": loan}
    if name == "reserve_room":
        room = rng.choice(list(ROOM_WORDS))
        day = rng.choice(["today", "tomorrow"])
        hour = rng.randint(9, 19)
        args = {"room": room, "date": day, "start": f"{hour:02d}:00"}
        text = f"reserve the {ROOM_WORDS[room]} {day} at {hour:02d}:00"
        if rng.random() < 0.4:
            args["hours"] = rng.randint(2, 4)
            text += f" for {args['hours']} hours"
        return text, args
    if name == "pay_fine":
        amount = rng.choice([2.5, 4.0, 7.25, 12.5, 15.0, 3.75])
        method = rng.choice(["card", "cash", "voucher"])
        word = {"card": rng.choice(["card", "credit card"]), "cash": "cash", "voucher": "voucher"}[method]
        return f"pay my {amount:g} fine by {word}", {"amount": amount, "method": method}
    if name == "register_member":
        who = rng.choice(NAMES)
        if rng.random() < 0.4:
            return f"sign up {who} as a student", {"name": who, "student": True}
        return rng.choice(["sign up {n}", "register {n} as a new member"]).format(n=who), {"name": who}
    if name == "cancel_reservation":
        n = rng.randint(100, 999)
        return rng.choice(["cancel reservation {n}", "please cancel my reservation {n}"]).format(n=n), \
            {"reservation_id": n}
    if name == "list_new_arrivals":
        genre = rng.choice(GENRES)
        if rng.random() < 0.4:
            limit = rng.randint(3, 9)
            return f"show me {limit} new {genre} books", {"genre": genre, "limit": limit}
        return rng.choice(["what is new in {g}", "any new {g} books"]).format(g=genre), {"genre": genre}
    if name == "ask_librarian":
        q = rng.choice(QUESTIONS)
        if rng.random() < 0.3:
            return f"urgent: {q}", {"question": q, "urgent": True}
        return f"ask a librarian {q}", {"question": q}
    months = rng.randint(2, 12)
    return rng.choice(["extend my membership by {m} months", "add {m} months to my membership"]).format(m=months), \
        {"months": months}


def library_request(rng, functions: list[str]) -> tuple[str, list]:
    """A request calling `functions` in order (none: a request no function serves)."""
    if not functions:
        return rng.choice(["thanks, that is all", "hello there", "you are very kind"]), []
    parts, calls = [], []
    for fn in functions:
        text, args = _one(rng, fn)
        parts.append(text)
        calls.append({"name": fn, "arguments": args})
    return " and ".join(parts), calls


CANARIES = ["canary.ada.lovelace@example.org", "+44 20 7946 0958", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00"]


def library_traffic(rng, n: int, *, canaries: bool = True) -> list[dict]:
    """`n` logged requests with their calls and timestamps; with `canaries`, every tenth
    carries a person's e-mail, phone, card or IBAN next to its ask."""
    import datetime as dt

    names = [f["function"]["name"] for f in LIBRARY]
    out = []
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    for i in range(n):
        fns = [rng.choice(names)] if rng.random() < 0.85 else (sorted(rng.sample(names, 2)) if rng.random() < 0.6
                                                                 else [])
        text, calls = library_request(rng, fns)
        if canaries and i % 10 == 0:
            text += f", my contact is {CANARIES[(i // 10) % len(CANARIES)]}"
        out.append({"request": text, "calls": calls, "timestamp": (start + dt.timedelta(minutes=7 * i)).isoformat()})
    return out


def library_brain(truth: dict[str, list], *, wrong_every: int = 0):
    """The test server as teacher and judge on the library catalog. `truth` maps a request
    (as the server receives it: redacted) to its calls, and learns the requests it writes.
    - writer prompt (`FUNCTIONS:` line): a new request calling those functions, and its calls;
    - teacher prompt (the user message is the request): its calls, a wrong value every
      `wrong_every`-th request (by hash);
    - judge prompt (`REQUEST:` and `LABEL:` lines): the label against the truth."""
    import hashlib
    import json
    import random
    import re
    import threading

    lock = threading.Lock()

    def line(text: str, name: str) -> str:
        m = re.search(rf"^{name}: (.*)$", text, re.MULTILINE)
        return m.group(1).strip() if m else ""

    def brain(messages: list, body: dict) -> str:
        user = messages[-1]["content"].strip()
        digest = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), 16)
        if user.startswith("FUNCTIONS:"):
            fns = [f.strip() for f in line(user, "FUNCTIONS").split(",") if f.strip() and f.strip() != "none"]
            request, calls = library_request(random.Random(digest), fns)
            with lock:
                truth.setdefault(request, calls)
            return json.dumps({"request": request, "calls": calls})
        if "REQUEST:" in user:
            request, label = line(user, "REQUEST"), line(user, "LABEL")
            true = truth.get(request)
            if true is None:
                return json.dumps({"verdict": "both_wrong", "analysis": "unknown request"})
            if json.loads(label) == true:
                return json.dumps({"verdict": "label_ok", "analysis": "matches the request"})
            return json.dumps({"verdict": "label_wrong", "corrected_label": true, "analysis": "does not match"})
        calls = truth.get(user, [])
        if wrong_every and calls and int(hashlib.sha256(user.encode()).hexdigest(), 16) % wrong_every == 0:
            calls = [dict(calls[0], arguments={k: (v + 1 if isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   else v) for k, v in calls[0]["arguments"].items()})] + calls[1:]
        return f"Here are the calls:\n```json\n{json.dumps(calls)}\n```"
    return brain


def library_folder(project: Path, *, redact: bool = True, logged: int = 300, held_out: int = 60,
                   seed: int = 30) -> dict[str, list]:
    """domains/library in `project`: the prompt templates of domains/toolcall, the library
    catalog, `logged` requests in logs/traffic.jsonl, `held_out` labelled ones in eval.jsonl and
    `seed` in seed.jsonl. Returns the calls of every request, keyed as the teacher receives
    it (redacted when `redact`)."""
    import json
    import random
    import shutil

    from flywheel.redact import DEFAULT_PATTERNS, Redactor

    def jsonl(path: Path, rows: list[dict]) -> None:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    folder = project / "domains" / "library"
    shutil.copytree(project / "domains" / "toolcall", folder,
                    ignore=shutil.ignore_patterns("user.jsonl", "traffic_*.jsonl"))  # the shipped catalog's data
    write_library(folder)
    traffic = library_traffic(random.Random(26), logged)
    jsonl(project / "logs" / "traffic.jsonl", [{"request": r["request"], "timestamp": r["timestamp"], "response": "ok"}
                                     for r in traffic])
    evals = library_traffic(random.Random(27), held_out, canaries=False)
    jsonl(folder / "eval.jsonl", [{"input": r["request"], "output": r["calls"]} for r in evals])
    seeds = library_traffic(random.Random(28), seed, canaries=False)
    jsonl(folder / "seed.jsonl", [{"input": r["request"], "output": r["calls"]} for r in seeds])
    red = Redactor(dict(DEFAULT_PATTERNS)) if redact else (lambda t: t)
    return {" ".join(red(r["request"]).split()): r["calls"] for r in traffic + evals + seeds}


def judge_on_traffic(verdicts, truth: dict[str, list]) -> dict:
    """The judge on the logged requests it verified (verdicts of `source: traffic`), against
    the calls the test server knows: rows, wrong teacher labels, precision and recall at
    flagging them (a flagged row is refused or dropped; None with nothing to count), and
    the share of kept labels that are right."""
    import json

    from flywheel.verdicts import WRONG

    def canon(text: str) -> str:
        return json.dumps(json.loads(text), sort_keys=True) if text else ""

    v = verdicts[(verdicts["source"] == "traffic") & verdicts["request"].isin(truth)]
    true = [json.dumps(truth[r], sort_keys=True) for r in v["request"]]
    wrong = [canon(label) != t for label, t in zip(v["label"], true)]
    flagged = list(v["verdict"].isin(WRONG) | v["final_label"].isna())
    hits = sum(w and f for w, f in zip(wrong, flagged))
    kept = [canon(f) == t for f, t in zip(v["final_label"], true) if f is not None and f == f]
    return {"rows": len(v), "wrong": sum(wrong),
            "precision": round(hits / sum(flagged), 4) if any(flagged) else None,
            "recall": round(hits / sum(wrong), 4) if any(wrong) else None,
            "kept_right": sum(kept) / len(kept) if kept else None}
