"""The model calls of one stage run: its cache, its budget, its clients, its report.

A stage opens one `Session`; it imports the stage's versioned calls file into the
cache, hands out clients, and on success writes the calls file (exactly the answers
used) and the run's numbers (calls, cache hits, errors, retries, tokens, time) to
`.llm-cache/reports/<gen>/<stage>.json`, which the flow logs to MLflow. Those numbers
differ between a first run and a rerun from the cache, so they stay out of the
DVC-tracked outputs, which must come out byte-identical. On failure the session writes
nothing: every answer received is already in the SQLite cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from flywheel import layout, store
from flywheel.config import BackendConfig, Budget
from flywheel.backends.cache import Cache
from flywheel.backends.client import Client, Spend, Stats, open_client


class Session:
    def __init__(self, stage: str, generation: str, budget: Budget, *, offline: bool, secrets: Mapping[str, str],
                 cache_path: Path = layout.LLM_CACHE):
        self.stage, self.offline, self._secrets = stage, offline, secrets
        self.calls_file = layout.path(generation, layout.CALLS[stage])
        self.report_file = layout.llm_report(generation, stage)
        self.cache = Cache(cache_path)
        self.imported = self.cache.load(self.calls_file)
        self.spend = Spend(budget, f"{stage}.budget")
        self.clients: dict[str, Client] = {}

    def client(self, cfg: BackendConfig, where: str) -> Client:
        if where not in self.clients:
            key = self._secrets.get(cfg.api_key_env) if cfg.api_key_env else None
            self.clients[where] = open_client(cfg, self.cache, self.spend, offline=self.offline, api_key=key,
                                              where=where)
        return self.clients[where]

    def committee(self, backends: list[BackendConfig]) -> list[tuple[Client, int]]:
        """The judge committee: (client, sample index) per member."""
        return [(self.client(b, f"judge.committee[{i}]"), s) for i, b in enumerate(backends) for s in range(b.samples)]

    def stats(self) -> dict:
        total = Stats()
        for c in self.clients.values():
            total = total.add(c.stats)
        return total.as_dict() | {"imported_from_calls_file": self.imported, "offline": self.offline}

    def finish(self) -> dict:
        """Write the calls file and the report; return the numbers."""
        self.cache.save(self.calls_file)
        stats = self.stats()
        store.write_json(stats, self.report_file)
        return stats

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.cache.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
