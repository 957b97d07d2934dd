"""Run a function over chunks of rows, in parallel, with one signature for every backend.

Results come back keyed by chunk, so the caller reassembles them by row id; which worker
ran which chunk never changes the output (randomness is per row, see ``pipeline.row_rng``).
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

#: default rows per chunk: large enough to amortise dispatch, small enough for a smooth progress bar
DEFAULT_CHUNK_SIZE = 256
BACKENDS = ("loky", "threading", "sequential")


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


def _n_jobs(jobs: int | None) -> int:
    return default_jobs() if not jobs or jobs <= 0 else int(jobs)


def _parallel(n_jobs: int, backend: str) -> Any:
    """The one ``joblib.Parallel`` configuration: identical arguments let joblib reuse the
    same loky worker processes across calls (see :func:`start_workers`)."""
    from joblib import Parallel

    return Parallel(n_jobs=n_jobs, backend=backend, return_as="generator", pre_dispatch="3 * n_jobs",
                    max_nbytes=None)


def start_workers(warm: Callable[[], Any], *, jobs: int | None = None, backend: str = "loky"
                  ) -> threading.Thread | None:
    """Start the worker processes in the background and run ``warm()`` (e.g. load models) in each.

    Returns the background thread (join it before :func:`map_chunks`), or None when the work
    will run in this process. Process start-up and model loading then overlap with what the
    caller does meanwhile (reading and validating the input); ``map_chunks`` with the same
    ``jobs`` and ``backend`` reuses the started processes. Errors in the warm-up are ignored:
    the real work reports its own.
    """
    n_jobs = _n_jobs(jobs)
    if n_jobs == 1 or backend != "loky":
        return None
    from joblib import delayed

    def run() -> None:
        try:
            for _ in _parallel(n_jobs, backend)(delayed(warm)() for _ in range(n_jobs)):
                pass
        except Exception:  # noqa: BLE001 - best effort; map_chunks surfaces real failures
            pass

    thread = threading.Thread(target=run, name="maskgen-start-workers", daemon=True)
    thread.start()
    return thread


def map_chunks(func: Callable[..., T], chunks: Sequence[tuple[Any, ...]], *, jobs: int | None = None,
               backend: str = "loky") -> Iterator[T]:
    """Yield ``func(*args)`` for each ``args`` in ``chunks``, in order.

    ``jobs`` None or <= 0 means all cores; ``jobs == 1`` or backend "sequential" runs in
    this process (no pickling, easiest to debug).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    n_jobs = _n_jobs(jobs)
    if n_jobs == 1 or backend == "sequential" or len(chunks) <= 1:
        for args in chunks:
            yield func(*args)
        return
    from joblib import delayed

    yield from _parallel(n_jobs, backend)(delayed(func)(*args) for args in chunks)


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
