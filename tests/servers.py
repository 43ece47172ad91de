"""Real servers on loopback for tests/test_deploy.py and tests/test_schedule.py, each
started and stopped by the test: `prefect server start` with a home of its own,
PostgreSQL 15 from Debian's packages in a temporary data directory, moto's S3 server (no
cloud can be reached from here), the MLflow tracking server on both, and a TCP relay that
cuts the network to one of them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import free_port
from flows.cli import await_healthy, spawn_prefect_server

PG_BIN = Path("/usr/lib/postgresql/15/bin")
S3_ENV = {"AWS_ACCESS_KEY_ID": "flywheel-test", "AWS_SECRET_ACCESS_KEY": "flywheel-test-secret",
          "AWS_DEFAULT_REGION": "us-east-1"}


def wait_http(url: str, proc: subprocess.Popen, seconds: float, what: str) -> None:
    """The CLI's own wait (flows/cli.py): until `url` answers, or stop `proc` and fail."""
    await_healthy({what: (proc, url)}, seconds)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


class PrefectServer:
    """`prefect server start` (every service on: scheduler, triggers and automations, late
    runs) with its home and SQLite database under `home`."""

    def __init__(self, home: Path, env: dict[str, str]):
        self.port = free_port()
        self.env = dict(env, PREFECT_HOME=str(home))
        self.env.pop("PREFECT_API_URL", None)
        home.mkdir(parents=True, exist_ok=True)
        self.proc = spawn_prefect_server(self.port, self.env, open(home / "server.log", "w"))
        wait_http(f"{self.url}/health", self.proc, 120, "the Prefect server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def close(self) -> None:
        stop(self.proc)


class Postgres:
    """A PostgreSQL cluster of its own (initdb refuses root: run as user postgres then)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="flywheel-pg-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        subprocess.run([str(PG_BIN / "psql"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "-c", "CREATE DATABASE mlflow"], check=True, capture_output=True)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/mlflow"

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(PG_BIN / tool), *args], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "start", "-o",
                 f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class S3:
    """moto's S3-compatible server, with the buckets the tests use."""

    def __init__(self, buckets: tuple[str, ...]):
        self.port = free_port()
        self.buckets = buckets
        self.proc = None
        self.start()
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.url, **{k.lower(): v for k, v in S3_ENV.items()
                                                         if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
        for b in buckets:
            s3.create_bucket(Bucket=b)
        self.client = s3

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """moto keeps its buckets in memory: a cut network is a `Gate` in front, not a restart."""
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_http(f"{self.url}/moto-api/", self.proc, 60, "the S3 server")

    def keys(self, bucket: str) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def close(self) -> None:
        stop(self.proc)


class MLflowServer:
    """`mlflow server` on PostgreSQL, artifacts proxied into an S3 bucket."""

    def __init__(self, pg: Postgres, s3: S3, bucket: str, log: Path):
        self.port = free_port()
        self.env = dict(os.environ, **S3_ENV, MLFLOW_S3_ENDPOINT_URL=s3.url)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", pg.url,
             "--artifacts-destination", f"s3://{bucket}/mlflow", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"],
            env=self.env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"{self.url}/health", self.proc, 180, "the MLflow server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        stop(self.proc)


class Gate:
    """A TCP relay in front of a server, for cutting the network to it: while `down`, it
    refuses connections and drops the open ones, as an unreachable endpoint does."""

    def __init__(self, target_port: int):
        import threading

        self.target = target_port
        self.port = free_port()
        self.open: list = []
        self.lock = threading.Lock()
        self.listener = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        import socket
        import threading

        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self) -> None:
        import socket

        self.listener.close()
        with self.lock:
            for s in self.open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.open.clear()

    def _accept(self, listener) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            server = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass
