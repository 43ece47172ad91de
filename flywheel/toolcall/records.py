"""OpenAI chat-completions records: logs and labelled files as the field writes them.

A record is what a deployed model received and answered, one JSON object a line (or a
Parquet row):

    {"messages": [{"role": "system", "content": ...}, {"role": "user", "content": ...}, ...],
     "tools": [{"type": "function", "function": {...}}, ...],          # optional
     "response": {"tool_calls": [{"type": "function",
                                  "function": {"name": ..., "arguments": "{...}"}}]},
     "timestamp": "2026-12-01T09:00:00Z"}                              # optional

or NVIDIA's Data Flywheel Blueprint's form, the body under `request` and the completion
under `response` (`{"request": {"messages", "tools"}, "response": {"choices": [{"message":
{...}}]}}`). The request is the last user turn; the turns before it (a system prompt,
earlier turns) and the tools it offered travel with its row as its `context`
(tables._LINEAGE): the student is prompted with them, the teacher sees them, the verifier
checks a label against the tools offered (a call of a function not offered is wrong).
Every message's text is redacted where it is read.

`read` checks one record and raises a one-line `DataError` naming the file, line and
field: a message without a role, no user turn, tools the catalog loader refuses, a
`tool_calls` entry naming no offered tool, arguments that are not JSON.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Callable

from flywheel.store import DataError
from flywheel.toolcall.catalog import Catalog, from_tools

ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class Record:
    request: str  # the last user turn, redacted
    context: str | None  # JSON {"messages": turns before it, "tools": offered}; None: neither
    answered: list[dict] | None  # the deployed model's calls (None: no response)
    timestamp: Any = None


def is_record(rec: dict) -> bool:
    """Is this line a chat-completions record (rather than a `request` string)?"""
    return "messages" in rec or isinstance(rec.get("request"), dict)


def _text(where: str, content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    raise DataError(f"{where}: content must be text or a list of text parts")


def _tool_calls(where: str, entries: Any, offered: set[str] | None) -> list[dict]:
    if not isinstance(entries, list):
        raise DataError(f"{where}: tool_calls must be a list")
    out = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        fn = entry.get("function") if isinstance(entry, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise DataError(f"{at}.function.name: missing")
        if offered is not None and fn["name"] not in offered:
            raise DataError(f"{at}.function.name: {fn['name']!r} is not one of the tools offered")
        args = fn.get("arguments", "{}")
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                raise DataError(f"{at}.function.arguments: not JSON") from None
        if not isinstance(args, dict):
            raise DataError(f"{at}.function.arguments: not a JSON object")
        out.append({"name": fn["name"], "arguments": args})
    return out


def _answer(where: str, response: Any, offered: set[str] | None) -> list[dict] | None:
    """The calls of a response: a message, or a completion's first choice's message."""
    if response is None:
        return None
    if isinstance(response, str):  # a text answer, as the request-string form keeps it
        return None
    if not isinstance(response, dict):
        raise DataError(f"{where}: response: must be an object")
    message, at = response, f"{where}: response"
    if "choices" in response:
        choices = response["choices"]
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise DataError(f"{at}.choices: must be a non-empty list")
        message, at = choices[0].get("message") or {}, f"{at}.choices[0].message"
    if message.get("tool_calls") is None:
        return []
    return _tool_calls(f"{at}.tool_calls", message["tool_calls"], offered)


def read(where: str, rec: dict, redactor: Callable[[str], str]) -> Record:
    """One record, checked and redacted (DataError: one line naming `where` and the field)."""
    body = rec["request"] if isinstance(rec.get("request"), dict) else rec
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: messages must be a non-empty list")
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise DataError(f"{where}: messages[{i}].role: missing or not one of {', '.join(ROLES)}")
        turn = {"role": m["role"], "content": " ".join(redactor(_text(f"{where}: messages[{i}]", m.get("content")))
                                                      .split())}
        if m.get("tool_calls") is not None:
            turn["tool_calls"] = _tool_calls(f"{where}: messages[{i}].tool_calls", m["tool_calls"], None)
        turns.append(turn)
    last = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=None)
    if last is None or not turns[last]["content"]:
        raise DataError(f"{where}: messages: no user turn with text")
    tools = body.get("tools")
    offered = None
    if tools is not None:
        if not isinstance(tools, list):
            raise DataError(f"{where}: tools must be a list")
        offered = set(from_tools(tools, f"{where}: tools").functions) if tools else set()
    answered = _answer(where, rec.get("response"), offered)
    context = {"messages": turns[:last], "tools": tools} if tools is not None or last else None
    return Record(turns[last]["content"], context_json(context) if context else None, answered,
                  rec.get("timestamp"))


def context_json(context: dict) -> str:
    return json.dumps(context, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def context_of(text: str | None) -> dict:
    """A row's context as data ({} for none)."""
    return json.loads(text) if isinstance(text, str) and text else {}


@functools.lru_cache(maxsize=256)
def _catalog(tools_json: str) -> Catalog:
    return from_tools(json.loads(tools_json), "the tools a logged request offered")


def catalog_for(context: str | None, default: Catalog) -> Catalog:
    """The catalog a row is checked and scored against: the tools its request offered, or
    `default` (the domain's) where it came with none."""
    tools = context_of(context).get("tools")
    return default if tools is None else _catalog(json.dumps(tools, sort_keys=True))


def prompt(request: str, context: str | None) -> dict | None:
    """What a chat student is prompted with for a row: its turns before the request, the
    request, the tools it offered (None: a row without context, the catalog's prompt)."""
    ctx = context_of(context)
    if not ctx:
        return None
    messages = [{"role": m["role"], "content": m.get("content") or ""} for m in ctx.get("messages", [])]
    return {"messages": messages + [{"role": "user", "content": request}], "tools": ctx.get("tools")}

