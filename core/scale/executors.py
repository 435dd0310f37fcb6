"""Pluggable executors for the per-tile map of `core.scale.tiles.run_tiles`.

- `InProcessExecutor` (the default): a plain loop in this process.
- `DaskExecutor(workers=N)`: a local Dask cluster of N worker processes with one thread
  each (`distributed.LocalCluster`), listening on 127.0.0.1 only, dashboard off. The
  model's intra-op threads per worker are the machine's cores / N. On a machine with
  CUDA devices every worker gets one device (`CUDA_VISIBLE_DEVICES`, worker resource
  ``GPU: 1``); with N above the device count workers share devices round-robin.
- `DaskExecutor(scheduler="tcp://HOST:PORT")`: an existing cluster (`dask scheduler`
  plus `dask worker` processes on other machines). Tasks ask for ``GPU: 1`` when the
  workers advertise that resource (`dask worker ... --resources GPU=1`).

Every tile is one task submitted with `retries`: a tile that raises is tried again, and
a tile whose worker dies (killed, out of memory) is rescheduled on another worker by
the scheduler (up to `distributed.scheduler.allowed-failures` deaths). Results are
small (the path of the persisted tile) and come back as they complete.

Dask moves task arguments between processes with pickle: use clusters you trust
(loopback for local clusters; TLS, `tls://`, across machines).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import (
    ClusterError,
    ConfigurationError,
    DependencyError,
    DeviceError,
    SegexplainError,
)

#: A call: positional and keyword arguments.
Call = tuple[tuple[Any, ...], dict[str, Any]]


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cuda_devices() -> list[str]:
    """CUDA device ids visible here (torch's count; empty without torch or CUDA)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core requirement
        return []
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else []
    return ids[:n] if len(ids) >= n > 0 else [str(i) for i in range(n)]


def gpu_worker_options(n: int, devices: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Options of `n` local GPU workers: one device each (round-robin), resource GPU=1."""
    if not devices:
        raise DeviceError("no CUDA device visible: GPU workers need at least one; run CPU "
                          "workers or use a machine with a GPU")
    return {f"gpu-{i}": {"nthreads": 1, "resources": {"GPU": 1},
                         "env": {"CUDA_VISIBLE_DEVICES": str(devices[i % len(devices)])}}
            for i in range(n)}


class InProcessExecutor:
    """Runs the calls one after the other in this process."""

    threads: int | None = None

    def map_unordered(self, fn: Callable[..., Any], calls: Sequence[Call],
                      names: Sequence[str] | None = None) -> Iterator[tuple[int, Any]]:
        """Yield (index, result) of every call, in order."""
        for i, (args, kwargs) in enumerate(calls):
            yield i, fn(*args, **kwargs)

    def describe(self) -> str:
        """One line for logs."""
        return "this process"

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> InProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaskExecutor:
    """Submits calls to a local or an existing Dask cluster (see the module doc).

    Parameters
    ----------
    workers:
        Worker processes of a local cluster (give this or `scheduler`).
    scheduler:
        Address of an existing scheduler, ``tcp://HOST:PORT`` (or ``tls://``).
    retries:
        Extra attempts for a tile that raises.
    threads:
        Model threads per task; default cores / workers (local), the workers' own
        setting (existing cluster: `SEGEXPLAIN_THREADS` in the worker's environment).
    memory_limit:
        Per local worker ("auto": the machine's memory / workers).
    timeout:
        Seconds to wait for the scheduler and its first worker.
    """

    def __init__(self, workers: int | None = None, scheduler: str | None = None, *,
                 retries: int = 2, threads: int | None = None,
                 memory_limit: str | int = "auto", timeout: float = 60.0) -> None:
        if (workers is None) == (scheduler is None):
            raise ConfigurationError("DaskExecutor: pass either workers (a local cluster) "
                                     "or scheduler (tcp://HOST:PORT), not both or neither")
        if workers is not None and workers < 1:
            raise ConfigurationError(f"--workers {workers}: expected at least 1")
        if scheduler is not None and "://" not in scheduler:
            raise ConfigurationError(f"--scheduler {scheduler}: expected an address like "
                                     "tcp://HOST:8786 (as `dask scheduler` prints it)")
        try:
            import distributed  # noqa: F401 - every method below needs it
        except ImportError as exc:
            raise DependencyError(
                f"--workers / --scheduler need Dask's distributed package, which this Python "
                f"lacks ({exc}): pip install dask distributed (pins in requirements.txt)"
            ) from exc
        self.workers = workers
        self.scheduler = scheduler
        self.retries = retries
        self.memory_limit = memory_limit
        self.timeout = timeout
        self.threads = threads if threads is not None else (
            max(1, cpu_count() // workers) if workers else None)
        self.gpus: list[str] = []
        self.cluster: Any = None
        self.client: Any = None
        self._resources: dict[str, float] | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> DaskExecutor:
        """Start the local cluster or connect to the scheduler."""
        from distributed import Client

        if self.client is not None:
            return self
        try:
            if self.scheduler is not None:
                self.client = Client(self.scheduler, timeout=self.timeout)
            else:
                self.cluster = self._local_cluster()
                self.client = Client(self.cluster, timeout=self.timeout)
            self.client.wait_for_workers(1, timeout=self.timeout)
        except (OSError, TimeoutError) as exc:
            self.close()
            where = self.scheduler or "a local cluster"
            raise ClusterError(
                f"no Dask worker reachable at {where} within {self.timeout:.0f} s "
                f"({type(exc).__name__}: {exc}); start `dask scheduler` and `dask worker "
                "ADDRESS` first, or use --workers N for a local cluster") from None
        info = self.client.scheduler_info()
        if any("GPU" in (w.get("resources") or {}) for w in info.get("workers", {}).values()):
            self._resources = {"GPU": 1}
        return self

    def _local_cluster(self) -> Any:
        from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

        n = int(self.workers or 1)
        self.gpus = cuda_devices()
        if not self.gpus:
            return LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                host="127.0.0.1", dashboard_address=None,
                                memory_limit=self.memory_limit, silence_logs=logging.ERROR)
        workers = {name: {"cls": Nanny, "options": {
            **opts, "host": "127.0.0.1", "memory_limit": self.memory_limit,
            "silence_logs": logging.ERROR}}
            for name, opts in gpu_worker_options(n, self.gpus).items()}
        scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1",
                                                   "dashboard": False}}
        return SpecCluster(workers=workers, scheduler=scheduler,
                           silence_logs=logging.ERROR)

    def close(self) -> None:
        """Close the client, and the local cluster if this executor started one."""
        for obj in (self.client, self.cluster):
            if obj is not None:
                with contextlib.suppress(Exception):  # best effort at shutdown
                    obj.close()
        self.client = self.cluster = None

    def __enter__(self) -> DaskExecutor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work ----------------------------------------------------------------------
    def describe(self) -> str:
        """One line for logs."""
        n = len(self.client.scheduler_info().get("workers", {})) if self.client else 0
        where = self.scheduler or "a local Dask cluster"
        gpu = f", {len(self.gpus)} GPU(s)" if self.gpus else ""
        return f"{where} ({n} worker(s){gpu})"

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> process id (for monitoring and fault tests)."""
        if self.client is None:
            return {}
        return {a: int(pid) for a, pid in self.client.run(os.getpid).items()}

    def map_unordered(self, fn: Callable[..., Any], calls: Sequence[Call],
                      names: Sequence[str] | None = None) -> Iterator[tuple[int, Any]]:
        """Submit every call; yield (index, result) as they complete.

        A call that still fails after the retries cancels the others and raises: the
        error itself when it is one of ours, else `ClusterError`.
        """
        from distributed import as_completed

        self.start()
        run = uuid.uuid4().hex[:8]
        labels = list(names) if names is not None else [str(i) for i in range(len(calls))]
        index: dict[str, int] = {}
        futures = []
        for i, (args, kwargs) in enumerate(calls):
            key = f"segexplain-tile-{labels[i]}-{run}"
            index[key] = i
            futures.append(self.client.submit(fn, *args, key=key, pure=False,
                                              retries=self.retries,
                                              resources=self._resources, **kwargs))
        try:
            for fut in as_completed(futures):
                yield index[fut.key], self._result(fut, labels[index[fut.key]])
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def _result(self, fut: Any, label: str) -> Any:
        from distributed import KilledWorker

        try:
            return fut.result()
        except SegexplainError:
            raise
        except KilledWorker as exc:
            raise ClusterError(
                f"tile {label} killed its Dask worker repeatedly ({exc}); out of memory? "
                "give workers more memory or use fewer workers, then run with --resume"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any task failure becomes one line
            raise ClusterError(
                f"tile {label} failed on the Dask cluster after {self.retries} retries "
                f"({type(exc).__name__}: {exc}); fix the cause and run with --resume"
            ) from None


def make_executor(workers: int | None = None, scheduler: str | None = None,
                  threads: int | None = None) -> InProcessExecutor | DaskExecutor:
    """Build the executor the command-line options ask for (in-process without either)."""
    if workers is not None and scheduler is not None:
        raise ConfigurationError("--workers and --scheduler exclude each other: --workers "
                                 "starts a local cluster, --scheduler uses an existing one")
    if workers is None and scheduler is None:
        return InProcessExecutor()
    return DaskExecutor(workers=workers, scheduler=scheduler, threads=threads)
