"""The client: one way to ask a teacher or judge model, whatever serves it.

`Client.ask(prompts, parse)` answers a list of prompts, each from the cache when it can,
otherwise from the backend, and returns one `Answer` per prompt in order. On the way:

- at most `concurrency` requests in flight (threads; for `transformers`, the batch size),
  and no more than `rpm` requests and `tpm` tokens in any 60 seconds;
- retries on 429, 5xx, timeouts and unreadable bodies, with exponential backoff and
  jitter, waiting what a `Retry-After` header asks for; other HTTP errors stop the stage;
- a hard budget of calls and tokens per stage run (`Spend`), shared by every client of the
  stage; when it is spent, no new request starts and the stage stops with a clear message
  (every answer so far is cached, so the next run picks up where this one stopped);
- `offline`: a cache miss is an error instead of a call;
- an answer `parse` rejects keeps its raw text and an error, and is not cached, so the
  next run asks again. Nothing unparsed ever becomes a label.
"""

from __future__ import annotations

import hashlib
import json
import queue
import random
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Callable

import httpx

from flywheel.config import BackendConfig, Budget
from flywheel.backends import LLMError
from flywheel.backends.cache import Cache, key as cache_key

RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_WAIT_S = 120.0  # longest Retry-After honoured


@dataclass(frozen=True)
class Prompt:
    messages: tuple[tuple[str, str], ...]  # (role, content)
    template_version: str
    parser_version: str
    schema: str = ""  # the JSON schema of the answer the parser reads ("" none); see `schema_text`


class Cut(str):
    """An answer the server stopped at `max_tokens` (finish_reason "length"): never a label,
    since what was cut may be a call (a real server, constrained to a JSON list, wrote
    calls until the limit and a lenient reader would keep the first: bench/real_server.py)."""


def schema_text(schema: dict) -> str:
    """A JSON schema as a Prompt carries it: canonical text (hashable, one cache key per schema)."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def sent_schema(cfg: BackendConfig, prompt: Prompt) -> str:
    """The schema the request asks the server to answer in ("" for free text): the
    prompt's, where an `openai` backend has `response_format: json_schema`."""
    return prompt.schema if cfg.backend == "openai" and cfg.response_format == "json_schema" else ""


@dataclass
class Answer:
    value: Any = None  # what `parse` made of the text; None when there is an error
    text: str = ""  # the raw answer, kept even when it cannot be parsed
    error: str = ""
    cached: bool = False


@dataclass
class Stats:
    calls: int = 0  # requests sent (retries included)
    cache_hits: int = 0
    errors: int = 0  # prompts left without a usable answer
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: "Stats") -> "Stats":
        return Stats(**{k: v + getattr(other, k) for k, v in asdict(self).items()})

    def as_dict(self) -> dict:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 2)
        return out


class Spend:
    """The stage's budget, shared by all its clients; charged before each request."""

    def __init__(self, budget: Budget, key: str):
        self.budget, self.key = budget, key
        self.calls = self.tokens = 0
        self._lock = threading.Lock()

    def charge_call(self) -> None:
        with self._lock:
            if self.budget.calls and self.calls >= self.budget.calls:
                raise LLMError(f"{self.key}.calls: budget of {self.budget.calls} calls spent; answers so far are "
                               "cached, so raising the budget and rerunning continues from here")
            if self.budget.tokens and self.tokens >= self.budget.tokens:
                raise LLMError(f"{self.key}.tokens: budget of {self.budget.tokens} tokens spent ({self.tokens}); "
                               "answers so far are cached, so raising the budget and rerunning continues from here")
            self.calls += 1

    def charge_tokens(self, n: int) -> None:
        with self._lock:
            self.tokens += n


class RateLimiter:
    """At most `rpm` requests and `tpm` tokens in any sliding 60 s window.

    The tokens in the window are kept as a running total, so a request costs the same
    however many went before it (summing the window's events on every request made the
    client's CPU grow with its own throughput). With neither limit set nothing is kept."""

    def __init__(self, rpm: int, tpm: int, window: float = 60.0):
        self.rpm, self.tpm, self.window = rpm, tpm, window
        self._events: deque[list[float]] = deque()  # [start time, tokens, 1.0 while in the window]
        self._used = 0.0  # tokens of the events in the window
        self._lock = threading.Lock()

    def acquire(self, tokens: int) -> list[float]:
        if not self.rpm and not self.tpm:
            return [time.monotonic(), float(tokens), 0.0]
        while True:
            with self._lock:
                now = time.monotonic()
                while self._events and self._events[0][0] <= now - self.window:
                    gone = self._events.popleft()
                    self._used -= gone[1]
                    gone[2] = 0.0
                if (not self.rpm or len(self._events) < self.rpm) and \
                        (not self.tpm or not self._events or self._used + tokens <= self.tpm):
                    event = [now, float(tokens), 1.0]
                    self._events.append(event)
                    self._used += tokens
                    return event
                wait = self._events[0][0] + self.window - now
            time.sleep(min(max(wait, 0.005), 1.0))

    def settle(self, event: list[float], tokens: int) -> None:
        with self._lock:
            if event[2]:
                self._used += tokens - event[1]
            event[1] = float(tokens)


class _Retryable(Exception):
    def __init__(self, reason: str, wait: float | None = None, unreachable: bool = False):
        super().__init__(reason)
        self.reason, self.wait, self.unreachable = reason, wait, unreachable


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_WAIT_S)
    except ValueError:
        try:
            return min(max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0), MAX_WAIT_S)
        except (TypeError, ValueError):
            return None


class _OpenAI:
    """Any server speaking OpenAI's /v1/chat/completions."""

    def __init__(self, cfg: BackendConfig, api_key: str | None):
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.cfg = cfg
        # One single-connection httpx client per request in flight, lent out from a queue,
        # instead of one client whose pool holds `concurrency` connections: httpcore's pool
        # scans all its connections for every request (encode/httpcore#1035). At concurrency
        # 32 this cut the client's CPU from 1.2-1.5 to 1.1-1.2 ms per request
        # (docs/benchmarks.md, measurement 3).
        self._idle: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()
        self.batch = 1

    def _borrow(self) -> httpx.Client:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            http = httpx.Client(headers=self._headers, timeout=self.cfg.timeout_s,
                                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
            with self._lock:
                self._clients.append(http)
            return http

    def identity(self) -> str:
        return self.cfg.model

    def complete(self, prompts: list[Prompt], sample: int) -> list[tuple[str, int, int]]:
        (prompt,) = prompts
        body = {"model": self.cfg.model, "messages": [{"role": r, "content": c} for r, c in prompt.messages],
                "temperature": self.cfg.temperature, "top_p": self.cfg.top_p, "max_tokens": self.cfg.max_tokens,
                "seed": sample}
        if sent_schema(self.cfg, prompt):
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "answer", "schema": json.loads(prompt.schema)}}
        http = self._borrow()
        try:
            resp = http.post(self.url, json=body)
        except httpx.TimeoutException:
            raise _Retryable(f"timeout after {self.cfg.timeout_s:g}s") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"cannot reach {self.cfg.base_url} ({type(exc).__name__})", unreachable=True) from None
        finally:
            self._idle.put(http)
        if resp.status_code in RETRY_STATUS:
            raise _Retryable(f"HTTP {resp.status_code}", _retry_after(resp.headers.get("retry-after")))
        if resp.status_code != 200:
            raise LLMError(f"{self.url}: HTTP {resp.status_code} for model {self.cfg.model!r}: "
                           f"{' '.join(resp.text.split())[:160]}")
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("content is not a string")
            if data["choices"][0].get("finish_reason") == "length":
                text = Cut(text)
            usage = data.get("usage") or {}
            return [(text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Retryable(f"malformed response body ({type(exc).__name__})") from None

    def close(self) -> None:
        with self._lock:
            for http in self._clients:
                http.close()


def local_identity(path: Path) -> str:
    """A local model's cache identity: its configs and the head of its weights, so a
    retrained model at the same path does not answer from the old model's cache."""
    digest = hashlib.sha256()
    for f in sorted(path.glob("*.json")) + sorted(path.glob("*.safetensors")):
        with f.open("rb") as fh:
            head = fh.read() if f.suffix == ".json" else fh.read(1 << 20)
        digest.update(f.name.encode() + str(f.stat().st_size).encode() + head)
    return f"{path.name}@{digest.hexdigest()[:12]}"


class _Transformers:
    """A local causal LM (a directory written by `save_pretrained`), batched greedy or sampled."""

    def __init__(self, cfg: BackendConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(cfg.model)
        if not (path / "config.json").exists():
            raise LLMError(f"model {cfg.model!r}: not a local model directory (no config.json)")
        self.torch, self.cfg, self.batch = torch, cfg, cfg.concurrency
        self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        self.model.eval()
        self._identity = local_identity(path)

    def identity(self) -> str:
        return self._identity

    def _text(self, prompt: Prompt) -> str:
        messages = [{"role": r, "content": c} for r, c in prompt.messages]
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"

    def complete(self, prompts: list[Prompt], sample: int) -> list[tuple[str, int, int]]:
        torch = self.torch
        enc = self.tok([self._text(p) for p in prompts], return_tensors="pt", padding=True)
        torch.manual_seed(sample)
        sampling = {"do_sample": True, "temperature": self.cfg.temperature, "top_p": self.cfg.top_p} \
            if self.cfg.temperature > 0 else {"do_sample": False}
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=self.cfg.max_tokens, pad_token_id=self.tok.pad_token_id,
                                      **sampling)
        new = out[:, enc["input_ids"].shape[1]:]
        results = []
        for i in range(len(prompts)):
            ids = [t for t in new[i].tolist() if t != self.tok.pad_token_id]
            results.append((self.tok.decode(ids, skip_special_tokens=True),
                            int(enc["attention_mask"][i].sum()), len(ids)))
        return results

    def close(self) -> None:
        pass


@dataclass
class Client:
    """One model of one role in one stage. Build it with `open_client`."""

    cfg: BackendConfig
    cache: Cache
    spend: Spend
    offline: bool
    backend: Any
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self):
        self.limiter = RateLimiter(self.cfg.rpm, self.cfg.tpm)
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The model's name in data and reports (a local model: its directory's name)."""
        return Path(self.cfg.model).name if self.cfg.backend == "transformers" else self.cfg.model

    def key(self, prompt: Prompt, sample: int) -> str:
        c = self.cfg
        # a constrained answer is another answer; free-text keys stay what they were
        constrained = {"schema": prompt.schema} if sent_schema(c, prompt) else {}
        return cache_key(backend=c.backend, model=self.backend.identity() if self.backend else c.model,
                         temperature=c.temperature, top_p=c.top_p, max_tokens=c.max_tokens, sample=sample,
                         messages=[list(m) for m in prompt.messages], template=prompt.template_version,
                         parser=prompt.parser_version, **constrained)

    def ask(self, prompts: list[Prompt], parse: Callable[[str], Any], *, sample: int = 0,
            on_done: Callable[[int], None] | None = None) -> list[Answer]:
        start = time.monotonic()
        answers: list[Answer | None] = [None] * len(prompts)
        keys = [self.key(p, sample) for p in prompts]
        todo = []
        for i, k in enumerate(keys):
            hit = self.cache.get(k)
            if hit is None:
                todo.append(i)
                continue
            self.stats.cache_hits += 1
            answers[i] = self._parsed(hit[0], parse, k, cached=True)
        if on_done and len(prompts) > len(todo):
            on_done(len(prompts) - len(todo))
        if todo and self.offline:
            raise LLMError(f"offline: {len(todo)} of {len(prompts)} prompts for model {self.cfg.model!r} are not "
                           f"cached (first key {keys[todo[0]][:12]}); run online, or `dvc pull` the calls file")
        batches = [todo[i: i + self.backend.batch] for i in range(0, len(todo), self.backend.batch)]
        failure: list[LLMError] = []

        def work(batch: list[int]) -> None:
            if self._stop.is_set():
                return
            try:
                results = self._request([prompts[i] for i in batch], sample)
            except LLMError as exc:
                self._stop.set()
                failure.append(exc)
                return
            for i, res in zip(batch, results):
                if isinstance(res, str):  # an error after all retries
                    answers[i] = Answer(error=res)
                elif isinstance(res[0], Cut):  # not cached: a run with a larger max_tokens asks again
                    answers[i] = Answer(text=str(res[0]), error=f"the answer stopped at max_tokens "
                                        f"({self.cfg.max_tokens}): raise it, or ask for less")
                else:
                    text, pt, ct = res
                    answers[i] = self._parsed(text, parse, keys[i], cached=False, tokens=(pt, ct))
            if on_done:
                on_done(len(batch))

        workers = 1 if self.backend.batch > 1 else self.cfg.concurrency
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, batches))
        self.stats.seconds += time.monotonic() - start
        if failure:
            raise failure[0]
        out = [a if a is not None else Answer(error="not asked") for a in answers]
        self.stats.errors += sum(1 for a in out if a.error)
        return out

    def _parsed(self, text: str, parse, k: str, *, cached: bool, tokens: tuple[int, int] | None = None) -> Answer:
        try:
            value = parse(text)
        except ValueError as exc:
            self.cache.forget(k)  # never keep an answer that cannot be used: the next run asks again
            return Answer(text=text, error=f"unparseable answer: {' '.join(str(exc).split())[:200]}", cached=cached)
        if not cached:
            self.cache.put(k, self.cfg.model, text, *tokens)
        return Answer(value=value, text=text, cached=cached)

    def _request(self, batch: list[Prompt], sample: int) -> list[tuple[str, int, int] | str]:
        """Send one request (a batch for local models) with retries; an error string per
        prompt when retries run out, LLMError when the stage must stop."""
        estimate = sum(sum(len(c) for _, c in p.messages) // 4 + self.cfg.max_tokens for p in batch)
        reasons = []
        for attempt in range(self.cfg.max_retries + 1):
            if self._stop.is_set():
                return ["stopped: another request failed the stage"] * len(batch)
            self.spend.charge_call()
            event = self.limiter.acquire(estimate)
            with self._lock:
                self.stats.calls += 1
            try:
                results = self.backend.complete(batch, sample)
            except _Retryable as exc:
                self.limiter.settle(event, 0)
                reasons.append(exc)
                if attempt == self.cfg.max_retries:
                    break
                with self._lock:
                    self.stats.retries += 1
                delay = exc.wait if exc.wait is not None else \
                    self.cfg.backoff_s * (2 ** attempt) * (0.5 + random.random())
                time.sleep(delay)
                continue
            used = sum(pt + ct for _, pt, ct in results)
            self.limiter.settle(event, used)
            self.spend.charge_tokens(used)
            with self._lock:
                self.stats.prompt_tokens += sum(pt for _, pt, _ in results)
                self.stats.completion_tokens += sum(ct for _, _, ct in results)
            return results
        if all(r.unreachable for r in reasons):
            raise LLMError(f"{reasons[-1].reason} after {len(reasons)} attempts (check base_url and that the "
                           "server is running)")
        return [f"{reasons[-1].reason} after {len(reasons)} attempts"] * len(batch)

    def close(self) -> None:
        self.backend.close()


def open_client(cfg: BackendConfig, cache: Cache, spend: Spend, *, offline: bool, api_key: str | None,
                where: str) -> Client:
    """A client for `cfg`. `api_key` comes from the environment variable the config names;
    `where` is the config key, for messages."""
    if cfg.api_key_env and not api_key:
        raise LLMError(f"{where}.api_key_env: environment variable {cfg.api_key_env} is not set")
    if offline:
        backend = _Offline(cfg)
    elif cfg.backend == "openai":
        backend = _OpenAI(cfg, api_key)
    else:
        backend = _Transformers(cfg)
    return Client(cfg, cache, spend, offline, backend)


class _Offline:
    """Stands in for a backend in offline mode: never contacted, since a miss is an error."""

    def __init__(self, cfg: BackendConfig):
        self.cfg, self.batch = cfg, 1
        self._identity = local_identity(Path(cfg.model)) if cfg.backend == "transformers" else cfg.model

    def identity(self) -> str:
        return self._identity

    def complete(self, prompts, sample):
        raise LLMError("offline: a model call was attempted")

    def close(self) -> None:
        pass
