"""maskgen.parallel: every backend gives the same bytes, including dask on a LocalCluster."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("skimage")

from maskgen.dataset import write_fer_csv  # noqa: E402
from maskgen.demo import demo_table  # noqa: E402
from maskgen.parallel import map_chunks  # noqa: E402
from maskgen.smfer import build_smfer  # noqa: E402


def _square(x: int) -> int:
    return x * x


def test_map_chunks_keeps_order_on_every_backend() -> None:
    chunks = [(i,) for i in range(7)]
    for backend in ("sequential", "threading", "loky"):
        assert list(map_chunks(_square, chunks, jobs=2, backend=backend)) == [i * i for i in range(7)]
    with pytest.raises(ValueError, match="unknown backend"):
        list(map_chunks(_square, chunks, backend="spark"))
    with pytest.raises(ValueError, match="goes with backend 'dask'"):
        list(map_chunks(_square, chunks, backend="loky", scheduler="tcp://x:1"))


def _square_warning_on_odd(x: int) -> int:
    if x % 2:
        import warnings

        warnings.warn(f"row {x} is odd", UserWarning)
    return x * x


def test_worker_warnings_reach_this_process_in_chunk_order() -> None:
    """A warning raised in a worker process is raised again here (the CLI formats it as PROG: warning:),
    not printed on the worker's stderr."""
    import warnings

    chunks = [(i,) for i in range(7)]
    for backend in ("sequential", "threading", "loky"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert list(map_chunks(_square_warning_on_odd, chunks, jobs=2, backend=backend)) == [i * i for i in range(7)]
        assert [str(w.message) for w in caught] == ["row 1 is odd", "row 3 is odd", "row 5 is odd"], backend


@pytest.fixture(scope="module")
def lfw_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lfw") / "faces.csv"
    write_fer_csv(path, demo_table(10))
    return path


def test_dask_local_cluster_is_byte_identical_to_loky(lfw_csv: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    loky = tmp_path / "loky.csv"
    build_smfer(lfw_csv, loky, jobs=2, chunk_size=3, progress=False)
    local = tmp_path / "dask_local.csv"  # a LocalCluster started for the build
    build_smfer(lfw_csv, local, jobs=2, chunk_size=3, backend="dask", progress=False)
    assert local.read_bytes() == loky.read_bytes()
    assert local.with_name("dask_local.meta.csv").read_bytes() == loky.with_name("loky.meta.csv").read_bytes()
    # an existing cluster, by scheduler address (as on a real cluster); chunks of another size
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        remote = tmp_path / "dask_remote.csv"
        build_smfer(lfw_csv, remote, chunk_size=4, backend="dask", scheduler=cluster.scheduler_address,
                    progress=False)
    assert remote.read_bytes() == loky.read_bytes()
