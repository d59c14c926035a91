"""Several server processes on one port (`neuroserve serve --workers N`, settings.workers).

The parent binds the socket and supervises; each worker is a whole server (uvicorn + create_app, every model
loaded in it). uvicorn's multiprocess supervisor already replaces a worker that dies (kill -9 included) and, on
SIGTERM, sends SIGTERM to every worker, whose graceful shutdown drains its in-flight requests within
drain_timeout_s. `Supervisor` adds the bookkeeping of the state the workers share, in one temporary folder:

    <state dir>/metrics/   PROMETHEUS_MULTIPROC_DIR: prometheus_client's per-process files, summed by /metrics
    <state dir>/ready/<pid>  written by a worker once its models are loaded; /v2/health/ready counts them

The parent sets both before any worker starts (the workers are spawned, so they import prometheus_client with
the variable already set), removes a dead worker's marker and live gauges, and deletes the folder at exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("neuroserve.workers")

STATE_DIR_ENV = "NEUROSERVE_WORKER_STATE_DIR"  # set by the parent for its workers; not a user setting
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
APP_FACTORY = "service.app:create_app"  # each worker builds its app from the environment (Settings())


def _alive(pid: int) -> bool:
    """The process runs (a killed worker stays a zombie until the parent reaps it, within a health check)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): ask the kernel
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


class WorkerGroup:
    """This process's view of the N workers it serves with: its ready marker and the others'."""

    def __init__(self, size: int, state_dir: Path | None):
        self.size = size
        self.pid = os.getpid()
        self.ready_dir = state_dir / "ready" if state_dir else None

    @classmethod
    def from_environment(cls, size: int) -> "WorkerGroup | None":
        """None for a single-process server; else the group of `size` workers (state dir from the parent)."""
        if size <= 1:
            return None
        state_dir = os.environ.get(STATE_DIR_ENV)
        if not state_dir:
            log.warning("workers=%d but no %s: start the server with `neuroserve serve --workers N`; "
                        "readiness will only speak for this process", size, STATE_DIR_ENV)
        return cls(size, Path(state_dir) if state_dir else None)

    def mark_ready(self) -> None:
        if self.ready_dir is not None:
            self.ready_dir.mkdir(parents=True, exist_ok=True)
            (self.ready_dir / str(self.pid)).touch()

    def mark_not_ready(self) -> None:
        if self.ready_dir is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.ready_dir / str(self.pid)).unlink()

    def ready_pids(self) -> list[int]:
        """Live workers whose models are loaded (this one included when it is)."""
        if self.ready_dir is None:
            return []
        try:
            names = [p.name for p in self.ready_dir.iterdir()]
        except FileNotFoundError:
            return []
        return sorted(pid for pid in (int(n) for n in names if n.isdigit()) if _alive(pid))

    def all_ready(self) -> bool:
        if self.ready_dir is None:  # no shared state: only this process can be vouched for
            return True
        return len(self.ready_pids()) >= self.size

    def describe(self) -> dict:
        """The `workers` field of /v2/health/ready and /v2/health/live."""
        return {"total": self.size, "ready": len(self.ready_pids()), "pid": self.pid}


def _supervisor_class():
    from uvicorn.supervisors.multiprocess import Multiprocess

    class Supervisor(Multiprocess):
        """uvicorn's Multiprocess, plus: a worker that is gone (died, or replaced by a SIGHUP restart) loses its
        ready marker and its live gauges (prometheus_client's mark_process_dead). The worker count is fixed
        (readiness waits for N), so SIGTTIN/SIGTTOU are ignored; so is SIGHUP (uvicorn's rolling restart gives a
        new worker 5 s to start, and ours loads every model before it counts as started)."""

        def _forget_gone(self, before: set[int]) -> None:
            from prometheus_client import multiprocess

            for pid in before - {p.pid for p in self.processes}:
                forget_worker(pid)
                multiprocess.mark_process_dead(pid)

        def keep_subprocess_alive(self) -> None:
            before = {p.pid for p in self.processes}
            super().keep_subprocess_alive()
            self._forget_gone(before)

        def restart_all(self) -> None:
            before = {p.pid for p in self.processes}
            super().restart_all()
            self._forget_gone(before)

        def handle_hup(self) -> None:
            log.info("SIGHUP ignored: restart the server to reload its workers")

        def handle_ttin(self) -> None:
            log.info("SIGTTIN ignored: the worker count is fixed (NEUROSERVE_WORKERS)")

        def handle_ttou(self) -> None:
            log.info("SIGTTOU ignored: the worker count is fixed (NEUROSERVE_WORKERS)")

    return Supervisor


def forget_worker(pid: int | None) -> None:
    state_dir = os.environ.get(STATE_DIR_ENV)
    if pid is not None and state_dir:
        with contextlib.suppress(FileNotFoundError):
            (Path(state_dir) / "ready" / str(pid)).unlink()


def run_workers(workers: int, **uvicorn_options) -> int:
    """Parent process: bind the port, start `workers` server processes, supervise them until SIGTERM/SIGINT.
    Call before anything imports prometheus_client or service.app in this process."""
    state_dir = Path(tempfile.mkdtemp(prefix="neuroserve-workers-"))
    (state_dir / "metrics").mkdir()
    (state_dir / "ready").mkdir()
    os.environ[STATE_DIR_ENV] = str(state_dir)
    os.environ[MULTIPROC_ENV] = str(state_dir / "metrics")
    os.environ["NEUROSERVE_WORKERS"] = str(workers)  # the workers' Settings and their share of the cores
    try:
        import uvicorn

        config = uvicorn.Config(APP_FACTORY, factory=True, workers=workers, **uvicorn_options)
        socket = config.bind_socket()
        log.info("starting %d workers on %s:%d (parent pid %d)", workers, config.host, config.port, os.getpid())
        supervisor = _supervisor_class()(config, sockets=[socket])
        supervisor.run()
        socket.close()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    from uvicorn.config import STARTUP_FAILURE

    # A worker that fails before serving (a bad setting, a busy port) would fail the same way on every restart:
    # uvicorn's supervisor stops, and so does the command, with uvicorn's own exit code.
    return STARTUP_FAILURE if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes) else 0
