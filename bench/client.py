"""Benchmark 3: the teacher/judge client against its limit.

A local OpenAI-compatible server (bench/llm_server.py, the project's one test double)
answers every request after a fixed `latency`, in its own process so that it does not
share the client's interpreter lock. With `concurrency` C requests in flight, no client
can do better than C / latency requests per second; the benchmark reports what
`Client.ask` achieves through the whole path (cache lookup, HTTP, parsing, the SQLite
write of every answer) as a share of that limit. Then it asks the same prompts again on
the warm cache and reports the requests made (must be 0) and rows per second.

Each run asks `rounds` x C prompts (400 rounds: about 20 s at 50 ms), long enough for a
cost that grows with the requests already made to show: the rate limiter once summed its
whole 60 s window on every request, which a 2.5 s run at C=32 hid (0.85 of the limit)
and a 20 s run exposed (0.56).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path


SERVER_START_S = 20.0


def _echo(messages: list, body: dict) -> str:
    return json.dumps({"verdict": "correct", "reason": messages[-1]["content"][-24:]})


def _serve(latency: float, conn) -> None:
    from bench.llm_server import FakeLLM

    with FakeLLM(_echo, latency=latency) as server:
        conn.send(server.url)
        conn.recv()  # until the parent says stop
        conn.send(server.requests)


def measure(*, prompts: int = 800, concurrency: int = 8, latency: float = 0.05) -> dict:
    from flywheel.config import BackendConfig, Budget
    from flywheel.backends.cache import Cache
    from flywheel.backends.client import Prompt, Spend, open_client

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(latency, child), daemon=True)
    server.start()
    if not parent.poll(SERVER_START_S):
        server.kill()
        raise RuntimeError("the benchmark's LLM server did not start")
    url = parent.recv()
    cfg = BackendConfig(backend="openai", model="bench", base_url=url, concurrency=concurrency, max_retries=0)
    batch = [Prompt((("system", "You are a judge."), ("user", f"row {i}: is this label right?")), "t1", "p1")
             for i in range(prompts)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cache = Cache(Path(tmp) / "responses.sqlite")
            client = open_client(cfg, cache, Spend(Budget(), "bench"), offline=False, api_key=None, where="bench")
            client.ask(batch[:concurrency], json.loads)  # connections up, threads warm (not timed)
            start, cpu = time.perf_counter(), time.process_time()
            cold = client.ask(batch[concurrency:], json.loads)
            cold_s, cold_cpu = time.perf_counter() - start, time.process_time() - cpu
            start = time.perf_counter()
            warm = client.ask(batch, json.loads)
            warm_s = time.perf_counter() - start
            client.close()
            cache.close()
    finally:
        parent.send("stop")
        served = parent.recv() if parent.poll(SERVER_START_S) else None
        server.join(5)
    asked = prompts - concurrency
    limit = concurrency / latency
    errors = sum(1 for a in cold + warm if a.error)
    return {"prompts": prompts, "concurrency": concurrency, "latency_s": latency,
            "limit_requests_per_s": limit, "requests_per_s": round(asked / cold_s, 1),
            "share_of_limit": round(asked / cold_s / limit, 3), "errors": errors,
            "client_cpu_ms_per_request": round(1000 * cold_cpu / asked, 2),
            "server_requests": served, "warm_requests": (served - prompts) if served is not None else None,
            "warm_rows_per_s": round(prompts / warm_s), "target": ">= 0.9 of the limit; warm cache: 0 requests"}
