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


_BRANCH = {"type": "string", "enum": ["central", "north", "east"]}
_TITLES = {"type": "array", "items": {"type": "string"}}

# Twelve more desks of the same library, with the schema constructs real catalogs use:
# arrays of scalars and of objects, objects nested in objects, an integer enum, defaults.
SERVICES = [
    _fn("hold_books", "Put books on hold at a branch", {"titles": _TITLES, "branch": dict(_BRANCH, default="central")},
        ["titles"]),
    _fn("order_supplies", "Order supplies for the desk", {"items": {"type": "array", "items": {
        "type": "object", "properties": {"name": {"type": "string"}, "quantity": {"type": "integer"}},
        "required": ["name", "quantity"]}}}, ["items"]),
    _fn("book_event", "Book an event in the hall", {"event": {"type": "object", "properties": {
        "title": {"type": "string"}, "date": {"type": "string", "format": "date"}, "seats": {"type": "integer"}},
        "required": ["title", "date"]}, "notify": {"type": "boolean", "default": False}}, ["event"]),
    _fn("set_preferences", "Set a member's preferences", {"prefs": {"type": "object", "properties": {
        "language": {"type": "string", "enum": ["english", "spanish", "german"]},
        "large_print": {"type": "boolean"}}, "required": ["language"]}}, ["prefs"]),
    _fn("send_notice", "Send a notice to members", {"members": {"type": "array", "items": {"type": "string"}},
                                                    "message": {"type": "string"}}, ["members", "message"]),
    _fn("rate_book", "Rate a book from 1 to 5 stars", {"title": {"type": "string"},
                                                       "stars": {"type": "integer", "enum": [1, 2, 3, 4, 5]}},
        ["title", "stars"]),
    _fn("report_damage", "Report a damaged item", {"item_id": {"type": "integer"}, "damage": {
        "type": "object", "properties": {"kind": {"type": "string", "enum": ["torn", "wet", "missing_pages"]},
                                         "pages": {"type": "array", "items": {"type": "integer"}}},
        "required": ["kind"]}}, ["item_id", "damage"]),
    _fn("schedule_pickup", "Pick up returns from an address", {"address": {"type": "object", "properties": {
        "street": {"type": "string"}, "city": {"type": "string"}}, "required": ["street", "city"]},
        "time": {"type": "string", "format": "time"}}, ["address", "time"]),
    _fn("add_tags", "Tag a book", {"title": {"type": "string"}, "tags": _TITLES}, ["title", "tags"]),
    _fn("transfer_books", "Move books between branches", {"titles": _TITLES, "from_branch": _BRANCH,
                                                          "to_branch": _BRANCH}, ["titles", "from_branch", "to_branch"]),
    _fn("request_purchase", "Ask the library to buy a book", {
        "title": {"type": "string"}, "copies": {"type": "integer", "default": 1},
        "formats": {"type": "array", "items": {"type": "string", "enum": ["print", "ebook", "audio"]}}}, ["title"]),
    _fn("donate_items", "Register a donation", {"donor": {"type": "object", "properties": {
        "name": {"type": "string"}, "city": {"type": "string"}}, "required": ["name"]}, "count": {"type": "integer"}},
        ["donor", "count"]),
]
FULL = LIBRARY + SERVICES  # 21 functions


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


CITIES = ["oslo", "porto", "graz", "turku"]
STREETS = ["elm street", "mill lane", "harbour road"]
SUPPLIES = ["pencils", "folders", "stamps", "labels"]
TAGS = ["mystery", "classic", "local", "rare"]


def _service(rng, name: str) -> tuple[str, dict]:
    """A request that calls one of SERVICES, every value said in it."""
    if name == "hold_books":
        titles = rng.sample(TITLES, 2)
        branch = rng.choice(["central", "north", "east"])
        return f"hold {titles[0]} and {titles[1]} at the {branch} branch", {"titles": titles, "branch": branch}
    if name == "order_supplies":
        things = rng.sample(SUPPLIES, 2)
        counts = [rng.randint(2, 20), rng.randint(2, 20)]
        return f"order {counts[0]} {things[0]} and {counts[1]} {things[1]}", \
            {"items": [{"name": t, "quantity": c} for t, c in zip(things, counts)]}
    if name == "book_event":
        title, day, seats = rng.choice(["poetry night", "chess club", "story hour"]), rng.choice(["today", "tomorrow"]), \
            rng.randint(10, 60)
        return f"book the hall for {title} {day} with {seats} seats", \
            {"event": {"title": title, "date": day, "seats": seats}}
    if name == "set_preferences":
        language = rng.choice(["english", "spanish", "german"])
        if rng.random() < 0.5:
            return f"set my language to {language} with large print", \
                {"prefs": {"language": language, "large_print": True}}
        return f"set my language to {language}", {"prefs": {"language": language}}
    if name == "send_notice":
        who = rng.sample(NAMES, 2)
        message = rng.choice(["the library closes early", "your books are ready", "the hall is booked"])
        return f"tell {who[0]} and {who[1]} that {message}", {"members": who, "message": message}
    if name == "rate_book":
        title, stars = rng.choice(TITLES), rng.randint(1, 5)
        return f"give {title} {stars} stars", {"title": title, "stars": stars}
    if name == "report_damage":
        item, pages = rng.randint(1000, 9999), sorted(rng.sample(range(10, 99), 2))
        return f"item {item} has missing pages {pages[0]} and {pages[1]}", \
            {"item_id": item, "damage": {"kind": "missing_pages", "pages": pages}}
    if name == "schedule_pickup":
        street, city, hour = rng.choice(STREETS), rng.choice(CITIES), rng.randint(9, 17)
        return f"pick up returns from {street} in {city} at {hour:02d}:00", \
            {"address": {"street": street, "city": city}, "time": f"{hour:02d}:00"}
    if name == "add_tags":
        title, tags = rng.choice(TITLES), rng.sample(TAGS, 2)
        return f"tag {title} as {tags[0]} and {tags[1]}", {"title": title, "tags": tags}
    if name == "transfer_books":
        title = rng.choice(TITLES)
        a, b = rng.sample(["central", "north", "east"], 2)
        return f"move {title} from the {a} branch to the {b} branch", \
            {"titles": [title], "from_branch": a, "to_branch": b}
    if name == "request_purchase":
        title, copies = rng.choice(TITLES), rng.randint(2, 5)
        return f"buy {copies} copies of {title} in print and ebook", \
            {"title": title, "copies": copies, "formats": ["print", "ebook"]}
    who, city, count = rng.choice(NAMES), rng.choice(CITIES), rng.randint(2, 30)
    return f"{who} from {city} donates {count} books", {"donor": {"name": who, "city": city}, "count": count}


def _one(rng, name: str) -> tuple[str, dict]:
    """A request that calls `name`, and the call."""
    if name in {f["function"]["name"] for f in SERVICES}:
        return _service(rng, name)
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


def library_traffic(rng, n: int, *, canaries: bool = True, tools: list | None = None) -> list[dict]:
    """`n` logged requests over `tools` (LIBRARY), with their calls and timestamps; with
    `canaries`, every tenth carries a person's e-mail, phone, card or IBAN next to its ask."""
    import datetime as dt

    names = [f["function"]["name"] for f in tools or LIBRARY]
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


# --- OpenAI chat-completions records (flywheel/toolcall/records.py) -----------------------

SYSTEM = "You are the desk assistant of the city library. Escalations go to {contact}."


def openai_records(rng, n: int, *, canaries: bool = True, labelled: bool = False) -> list[dict]:
    """`n` chat-completions records over FULL: a system prompt (with a person's contact
    in every third one when `canaries`), sometimes an earlier exchange, the request, the
    tools that request offered (the functions it calls and four others), and the deployed
    model's `tool_calls` (`labelled`: the calls as `output` instead). Each with its calls."""
    import json

    names = [f["function"]["name"] for f in FULL]
    by_name = {f["function"]["name"]: f for f in FULL}
    out = []
    for i, logged in enumerate(library_traffic(rng, n, canaries=canaries, tools=FULL)):
        text, made = logged["request"], logged["calls"]
        fns = [c["name"] for c in made]
        contact = CANARIES[i % len(CANARIES)] if canaries and i % 3 == 0 else "the head librarian"
        messages = [{"role": "system", "content": SYSTEM.format(contact=contact)}]
        if rng.random() < 0.3:
            messages += [{"role": "user", "content": "hello, is anyone there?"},
                         {"role": "assistant", "content": "Yes, how can I help you today?"}]
        messages.append({"role": "user", "content": text})
        offered = sorted(set(fns) | set(rng.sample([x for x in names if x not in fns], 4)))
        record = {"messages": messages, "tools": [by_name[x] for x in offered], "timestamp": logged["timestamp"]}
        if labelled:
            record["output"] = made
        else:
            record["response"] = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{i}_{k}", "type": "function", "function": {"name": c["name"],
                                                                          "arguments": json.dumps(c["arguments"])}}
                for k, c in enumerate(made)]}
        out.append({"record": record, "request": text, "calls": made, "offered": offered})
    return out


def records_folder(project: Path, *, logged: int = 120, held_out: int = 40, seed: int = 30) -> dict[str, list]:
    """domains/library in `project` with the 21-function catalog, `logged` records in
    logs/traffic.jsonl, `held_out` labelled records in eval.jsonl and `seed` in seed.jsonl.
    Returns the calls of every request, keyed as the teacher receives it (redacted)."""
    import json
    import random
    import shutil

    from flywheel.redact import DEFAULT_PATTERNS, Redactor

    def jsonl(path: Path, rows: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r["record"]) + "\n" for r in rows))

    folder = project / "domains" / "library"
    shutil.copytree(project / "domains" / "toolcall", folder,
                    ignore=shutil.ignore_patterns("user.jsonl", "traffic_*.jsonl"))
    write_library(folder, tools=FULL)
    traffic = openai_records(random.Random(36), logged)
    evals = openai_records(random.Random(37), held_out, canaries=False, labelled=True)
    seeds = openai_records(random.Random(38), seed, canaries=False, labelled=True)
    jsonl(project / "logs" / "traffic.jsonl", traffic)
    jsonl(folder / "eval.jsonl", evals)
    jsonl(folder / "seed.jsonl", seeds)
    red = Redactor(dict(DEFAULT_PATTERNS))
    return {" ".join(red(r["request"]).split()): r["calls"] for r in traffic + evals + seeds}
