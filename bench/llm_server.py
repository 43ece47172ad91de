"""A small OpenAI-compatible server on 127.0.0.1 for tests and benchmarks.

It is the one test double in the project, standing in for vLLM/Ollama, which cannot run
here. It serves POST /v1/chat/completions for real over HTTP, so the client layer is
exercised end to end (connection pool, threads, timeouts, headers). Answers come from a
`brain(messages, body) -> str`; faults are injected from a queue, one per request, in
order: "500", "429:<seconds>" (with Retry-After), "hang:<seconds>", "badbody" (HTTP 200
with a body that is not JSON), "garbage" (HTTP 200 whose answer is not JSON), "401",
"length" (the brain's answer, marked as stopped at max_tokens: finish_reason "length").
`fault_rate` draws a fault from `fault_kinds` for that share of requests (seeded), and
`down()`/`up()` stop and restart listening on the same port (an outage: connections are
refused meanwhile). It counts requests, each distinct request body (`asked`), the most
ever in flight, and keeps every request's headers and body (`bodies`, the bytes as sent).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

Brain = Callable[[list, dict], str]


class FakeLLM:
    def __init__(self, brain: Brain, *, latency: float = 0.0, fault_rate: float = 0.0,
                 fault_kinds: tuple[str, ...] = ("500", "429:0", "badbody", "garbage"), seed: int = 0,
                 port: int = 0):
        self.brain, self.latency = brain, latency
        self.faults: deque[str] = deque()
        self.fault_rate, self.fault_kinds, self._rng = fault_rate, fault_kinds, random.Random(seed)
        self.asked: Counter[str] = Counter()
        self.requests = 0
        self.in_flight = self.max_in_flight = 0
        self.headers: list[dict] = []
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        self._listen(port)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _listen(self, port: int) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client killed mid-request is expected
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeLLM":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.down()

    def down(self) -> None:
        """Stop listening: new connections are refused until `up()`."""
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    def up(self) -> None:
        self._listen(int(self.url.rsplit(":", 1)[1].split("/")[0]))
        self.thread.start()

    def reset(self) -> None:
        with self.lock:
            self.requests = self.max_in_flight = 0
            self.headers.clear()
            self.bodies.clear()
            self.faults.clear()
            self.asked.clear()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as real servers set it: headers and body go out in two writes,
            # and Nagle's algorithm with the client's delayed ACK would add ~40 ms to each.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: bytes, headers: dict | None = None):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if fake.server is None:  # down: drop kept-alive connections without an answer
                    self.close_connection = True
                    return
                body = json.loads(raw)
                with fake.lock:
                    fake.requests += 1
                    fake.asked[hashlib.sha256(raw).hexdigest()] += 1
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    fake.headers.append(dict(self.headers))
                    fake.bodies.append(raw)
                    fault = fake.faults.popleft() if fake.faults else ""
                    if not fault and fake.fault_rate and fake._rng.random() < fake.fault_rate:
                        fault = fake._rng.choice(fake.fault_kinds)
                try:
                    if fake.latency:
                        time.sleep(fake.latency)
                    if fault == "500":
                        return self._send(500, b'{"error": "injected"}')
                    if fault == "401":
                        return self._send(401, b'{"error": "bad key"}')
                    if fault.startswith("429"):
                        return self._send(429, b'{"error": "slow down"}', {"Retry-After": fault.split(":")[1]})
                    if fault.startswith("hang"):
                        time.sleep(float(fault.split(":")[1]))
                    if fault == "badbody":
                        return self._send(200, b"<html>proxy error</html>")
                    text = "I think the answer is probably fine." if fault == "garbage" else \
                        fake.brain(body["messages"], body)
                    reply = {"id": "x", "object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "length" if fault == "length" else "stop"}],
                             "usage": {"prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
                                       "completion_tokens": len(text.split())}}
                    return self._send(200, json.dumps(reply).encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

        return Handler


def _field(messages: list, name: str) -> str:
    text = messages[-1]["content"]
    m = re.search(rf"^{name}: (.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else ""


def toolcall_brain(truth: dict[str, str], *, wrong_every: int = 0) -> Brain:
    """An oracle for the toolcall domain: `truth` maps request text to its true label.
    As teacher it answers the true calls (a wrong one every `wrong_every`-th request, by
    hash); as judge it compares the label with the truth and corrects it. Asked to write
    a request (the writer prompt's `FUNCTIONS:` line), it has the embedded request
    generator compose one for those functions and skills, and learns its calls."""
    def brain(messages: list, body: dict) -> str:
        user = messages[-1]["content"].strip()
        if user.startswith("FUNCTIONS:"):  # the writer: a new request and its calls
            from flywheel.toolcall import phrasings

            fns = tuple(f.strip() for f in _field(messages, "FUNCTIONS").split(",") if f.strip() not in ("", "none"))
            from flywheel.toolcall.phrasings import PHENOMENA

            skills = frozenset(s.strip() for s in _field(messages, "SKILLS").split(",")) & set(PHENOMENA)
            seed = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), 16)
            try:
                req = phrasings.make_request(random.Random(seed), phrasings.Spec(fns, skills))
            except (KeyError, ValueError, IndexError):  # a skill no carrier of these functions shows
                req = phrasings.make_request(random.Random(seed), phrasings.Spec(fns))
            truth.setdefault(" ".join(req.text.split()), json.dumps(req.calls))
            return json.dumps({"request": req.text, "calls": req.calls})
        if "REQUEST:" not in user:  # a teacher prompt: the user message is the request
            label = truth.get(user, "[]")
            if wrong_every and int(hashlib.sha256(user.encode()).hexdigest(), 16) % wrong_every == 0:
                calls = json.loads(label)
                label = json.dumps([{"name": "get_weather", "arguments": {"city": "paris"}}]) if not calls else "[]"
            return f"Sure! Here are the calls:\n```json\n{label}\n```"
        request, label = _field(messages, "REQUEST"), _field(messages, "LABEL")
        true = truth.get(request)
        if true is None:
            return json.dumps({"verdict": "both_wrong", "analysis": "unknown request"})
        if json.loads(label) == json.loads(true):
            return json.dumps({"verdict": "label_ok", "analysis": "matches the request"})
        return json.dumps({"verdict": "label_wrong", "corrected_label": json.loads(true),
                           "analysis": "the label does not do what the request says"})
    return brain


_OPS = {"plus": ("add", lambda a, b: a + b), "minus": ("subtract", lambda a, b: a - b),
        "times": ("multiply", lambda a, b: a * b)}
_WORD = {v[0]: k for k, v in _OPS.items()}


def arithmetic(request: str) -> tuple[str, str] | None:
    m = re.search(r"(-?\d+) (plus|minus|times) (-?\d+)", request)
    if not m:
        return None
    skill, f = _OPS[m.group(2)]
    return skill, str(f(int(m.group(1)), int(m.group(3))))


def arithmetic_brain(*, wrong_every: int = 5) -> Brain:
    """Teacher and judge for domains/arithmetic: the teacher writes a new request of the
    asked skill (its answer wrong every `wrong_every`-th time, by hash); the judge
    computes the answer and compares."""
    def brain(messages: list, body: dict) -> str:
        user = messages[-1]["content"]
        if "REQUEST:" in user:
            request, label = _field(messages, "REQUEST"), _field(messages, "LABEL")
            reference = _field(messages, "REFERENCE")
            solved = arithmetic(request)
            if solved is None:
                return "no idea"
            skill, true = solved
            if reference:  # judge-scored evaluation: is the answer the reference?
                true = reference
            if label.strip() == true:
                return json.dumps({"verdict": "label_ok", "analysis": "correct", "skills": [skill]})
            return json.dumps({"verdict": "label_wrong", "corrected_label": true, "skills": [skill],
                               "analysis": f"{request} is {true}, not {label}"})
        skill = re.search(r"Skill: (\w+)", user).group(1)
        h = int(hashlib.sha256(user.encode()).hexdigest(), 16)
        a, b = 2 + h % 40, 2 + (h // 40) % 12
        word = _WORD.get(skill, "plus")
        phrase = ["what is", "compute", "tell me"][(h // 480) % 3]
        request = f"{phrase} {a} {word} {b}"
        answer = int(arithmetic(request)[1])
        if wrong_every and (h // 1440) % wrong_every == 0:
            answer += 1
        return json.dumps({"input": request, "output": str(answer)})
    return brain


def main() -> None:
    """`python -m bench.llm_server --truth FILE [--port N]`: the toolcall oracle on a port,
    as the teacher and judge of docs/your-tools.md's worked example (FILE: JSONL of
    {"request", "calls"}, what the stand-in knows of the traffic)."""
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--wrong-every", type=int, default=5)
    args = ap.parse_args()
    truth = {}
    for line in Path(args.truth).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            truth[" ".join(rec["request"].split())] = json.dumps(rec["calls"])
    with FakeLLM(toolcall_brain(truth, wrong_every=args.wrong_every), port=args.port) as fake:
        print(f"serving {fake.url} ({len(truth)} known requests); Ctrl-C stops", flush=True)
        try:
            fake.thread.join()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
