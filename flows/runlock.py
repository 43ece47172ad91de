"""One flywheel run per workspace at a time.

`run_lock(root)` holds an exclusive `flock` on `<root>/.flywheel/run.lock` for the whole
run and writes who holds it (PID, host, start time) into the file. A second run finds the
lock taken and is refused with a message naming the holder. The kernel drops a `flock`
when its process dies, however it dies, so a run killed with SIGKILL leaves only the text
behind: the next run takes the lock, reports that it cleared a stale lock of a process
that is gone, and goes on. No PID guessing decides whether a lock is stale. Clearing a
killed run's stale lock also repairs what that run may have left half-written
(flows/recover.py: `dvc.lock`, git's index lock).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

LOCK = Path(".flywheel") / "run.lock"
_held: set[Path] = set()  # locks this process holds (the CLI and its flow share one)


class RunLocked(RuntimeError):
    pass


@contextlib.contextmanager
def run_lock(root: Path, what: str = "flywheel run") -> Iterator[str]:
    """Hold the workspace's run lock; yields a note about a stale lock it cleared ("" if none)."""
    path = (Path(root) / LOCK).resolve()
    if path in _held:  # re-entered by the same process (the CLI, then the flow it runs)
        yield ""
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown holder"
            raise RunLocked(f"{path}: another flywheel run is in progress ({holder}); wait for it to end or "
                            "stop it") from None
        previous = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        note = ""
        if previous:
            from flows.recover import after_kill

            note = "; ".join(filter(None, [f"cleared a stale run lock left by a run that is gone ({previous})",
                                           after_kill(root, previous)]))
        me = f"PID {os.getpid()} on {socket.gethostname()}, {what}, since " \
             f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        os.fsync(fd)
        _held.add(path)
        try:
            yield note
        finally:
            _held.discard(path)
            os.ftruncate(fd, 0)  # a clean end leaves no text: text without a lock means a killed run
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
