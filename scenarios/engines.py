"""Execution engines for many independent runs: serial, local processes, Dask distributed.

Every engine calls the same pure task function, so identical tasks give identical results
whatever the engine. Results are yielded as they complete; a task that raises inside the run is
returned as a failed record by the task function itself, so one crash loses no other run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

__all__ = ["ENGINES", "run_tasks"]

T = TypeVar("T")
R = TypeVar("R")
ENGINES = ("serial", "processes", "dask")


def run_tasks(fn: Callable[[T], R], tasks: Sequence[T], engine: str = "processes",
              workers: int | None = None, scheduler: str | None = None) -> Iterator[R]:
    """Yield ``fn(task)`` for every task, in completion order."""
    if engine == "serial" or not tasks:
        for t in tasks:
            yield fn(t)
    elif engine == "processes":
        from concurrent.futures import ProcessPoolExecutor, as_completed

        n = min(workers or os.cpu_count() or 1, len(tasks))
        with ProcessPoolExecutor(max_workers=n, mp_context=_context()) as pool:
            futures = [pool.submit(fn, t) for t in tasks]
            for f in as_completed(futures):
                yield f.result()
    elif engine == "dask":
        yield from _dask(fn, tasks, workers, scheduler)
    else:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def _context():
    """forkserver with darkfab preloaded: workers start as cheap forks of a clean, single-
    threaded server that has imported numpy, scipy, pyarrow and darkfab once; spawn where
    forkserver does not exist (Windows, macOS defaults differ)."""
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["darkfab.scenarios.experiment"])
        return ctx
    return mp.get_context("spawn")


def _dask(fn, tasks, workers, scheduler) -> Iterator[Any]:
    try:
        from distributed import Client, LocalCluster, as_completed as dask_completed
    except ImportError as e:  # pragma: no cover - dask is a declared dependency
        raise RuntimeError("the dask engine needs 'distributed' (pip install distributed)") from e
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = client.map(fn, list(tasks), pure=False)
        for f in dask_completed(futures):
            yield f.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
