"""Run a function over chunks of rows, in parallel, with one signature for every backend.

Results come back keyed by chunk, so the caller reassembles them by row id; which worker
ran which chunk never changes the output (randomness is per row, see ``pipeline.row_rng``).

Backends: ``loky`` (processes on this machine, the default), ``threading``, ``sequential``,
and ``dask``: a dask.distributed cluster (optional extra ``maskgen[dask]``), either an existing
one (``scheduler="tcp://host:8786"``) or a ``LocalCluster`` of ``jobs`` single-threaded worker
processes started for the call. Models load once per worker process (the landmark source is a
per-process singleton), so a long-lived cluster pays for them once.

Warnings a worker process raises travel back with its chunk's result and are raised again here,
in chunk order, so a command shows them in its own format (``maskgen.cli_errors``), not as a
worker's stderr line.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

#: default rows per chunk: large enough to amortise dispatch, small enough for a smooth progress bar
DEFAULT_CHUNK_SIZE = 256
BACKENDS = ("loky", "threading", "sequential", "dask")
#: seconds to wait for a dask scheduler given by address before giving up with one line
SCHEDULER_TIMEOUT_S = 10.0
#: the most worker processes (or threads) per CPU that a local backend may start: more is a typo
#: (``-j 1000``), not a speed-up, and each loky / dask worker is a process holding its own models
MAX_JOBS_PER_CPU = 4


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def chunk_ranges(n: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[tuple[int, int]]:
    """Split ``range(n)`` into consecutive ``(start, stop)`` chunks."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    return [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


def check_threads(threads: int | None, option: str = "--threads") -> int | None:
    """``threads`` (None: the library's default) if at most :data:`MAX_JOBS_PER_CPU` per CPU this process may use.

    Raises:
        ValueError: more, naming ``option`` and the CPU count (torch.set_num_threads(10**8) crashed the
            process with a segmentation fault; a number past 64 bits was an 'Overflow' without its option).
    """
    if threads is None:
        return None
    cpus = default_jobs()
    if threads > MAX_JOBS_PER_CPU * cpus:
        raise ValueError(f"{option} {threads}: more than {MAX_JOBS_PER_CPU} threads per CPU (this process may use "
                         f"{cpus} CPU{'s' if cpus != 1 else ''}: at most {MAX_JOBS_PER_CPU * cpus})")
    return threads


def check_jobs(jobs: int | None, backend: str = "loky", scheduler: str | None = None) -> int:
    """The number of workers ``jobs`` asks for (None or <= 0: all cores), checked before any work.

    Raises:
        ValueError: an unknown backend, a scheduler without backend "dask", or (backends that start workers
            on this machine: loky, threading, dask without ``scheduler``) more than :data:`MAX_JOBS_PER_CPU`
            workers per CPU this process may use, naming ``--jobs`` and the CPU count.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if scheduler is not None and backend != "dask":
        raise ValueError("a scheduler address goes with backend 'dask'")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer))):
        raise ValueError(f"--jobs must be an integer, got {jobs!r}")
    cpus = default_jobs()
    n_jobs = cpus if not jobs or jobs <= 0 else int(jobs)
    local = backend in ("loky", "threading") or (backend == "dask" and scheduler is None)
    if local and n_jobs > MAX_JOBS_PER_CPU * cpus:
        raise ValueError(f"--jobs {n_jobs}: more than {MAX_JOBS_PER_CPU} workers per CPU (this process may use "
                         f"{cpus} CPU{'s' if cpus != 1 else ''}: at most {MAX_JOBS_PER_CPU * cpus}); "
                         "use 0 for one worker per CPU")
    return n_jobs


def map_chunks(func: Callable[..., T], chunks: Sequence[tuple[Any, ...]], *, jobs: int | None = None,
               backend: str = "loky", scheduler: str | None = None) -> Iterator[T]:
    """Yield ``func(*args)`` for each ``args`` in ``chunks``, in order.

    ``jobs`` None or <= 0 means all cores; ``jobs == 1`` or backend "sequential" runs in
    this process (no pickling, easiest to debug). ``scheduler``: address of a running dask
    scheduler (backend "dask" only; default: a local cluster for this call). The options are
    checked (:func:`check_jobs`) when this is called, before the first chunk runs.
    """
    n_jobs = check_jobs(jobs, backend, scheduler)
    return _map_chunks(func, chunks, n_jobs, backend, scheduler)


def _map_chunks(func: Callable[..., T], chunks: Sequence[tuple[Any, ...]], n_jobs: int, backend: str,
                scheduler: str | None) -> Iterator[T]:
    """:func:`map_chunks` once its options are checked."""
    if backend == "dask":
        yield from _map_dask(func, chunks, n_jobs, scheduler)
        return
    if n_jobs == 1 or backend == "sequential" or len(chunks) <= 1:
        for args in chunks:
            yield func(*args)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, backend=backend, return_as="generator", pre_dispatch="3 * n_jobs",
                        max_nbytes=None)
    if backend == "threading":  # same process: warnings show as they are raised
        yield from parallel(delayed(func)(*args) for args in chunks)
        return
    for result in parallel(delayed(_recording)(func, *args) for args in chunks):
        yield _rewarned(result)


def _recording(func: Callable[..., T], *args: Any) -> tuple[T, list[tuple[type[Warning], str]]]:
    """In a worker process: ``func(*args)`` and the warnings it raised (category, message)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        result = func(*args)
    return result, [(w.category, str(w.message)) for w in caught]


def _rewarned(recorded: tuple[T, list[tuple[type[Warning], str]]]) -> T:
    """Back in this process: raise a chunk's recorded warnings again, then hand its result on."""
    result, caught = recorded
    for category, message in caught:
        warnings.warn(message, category, stacklevel=2)
    return result


def _map_dask(func: Callable[..., T], chunks: Sequence[tuple[Any, ...]], n_jobs: int,
              scheduler: str | None) -> Iterator[T]:
    """``map_chunks`` on dask.distributed: submit every chunk, yield results in submission order."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("backend 'dask' needs dask.distributed: pip install 'maskgen[dask]'") from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        try:  # fail fast, with the address, instead of dask's 30 s and a traceback
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ValueError(f"--scheduler {scheduler}: cannot connect to a dask scheduler ({reason[:200]})") from None
    try:
        futures = [client.submit(_recording, func, *args, pure=False) for args in chunks]
        for future in futures:
            yield _rewarned(future.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def gather_rows(n: int, results: Iterator[tuple[np.ndarray, np.ndarray, list[dict]]], image_shape: tuple[int, ...],
                on_chunk: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[dict]]:
    """Reassemble chunk results ``(row_ids, images, records)`` into arrays ordered by row id."""
    images = np.empty((n, *image_shape), np.uint8)
    records: list[dict | None] = [None] * n
    seen = np.zeros(n, bool)
    for row_ids, chunk_images, chunk_records in results:
        images[row_ids] = chunk_images
        for row_id, record in zip(row_ids.tolist(), chunk_records):
            records[row_id] = record
        seen[row_ids] = True
        if on_chunk is not None:
            on_chunk(len(row_ids))
    if not seen.all():
        raise RuntimeError(f"{int((~seen).sum())} rows were not processed")
    return images, records  # type: ignore[return-value]
