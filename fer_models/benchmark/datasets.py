"""SMFER2013 and MFER2013 made from FER2013 with maskgen for the grid (``fer-models benchmark --build``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def build_folder(out: str | Path) -> Path:
    """The folder ``--build`` makes its datasets in (theirs alone: no other output may be written there)."""
    return Path(out) / "data"


def build_datasets(fer: str | Path, out: Path, seed: int = 0, jobs: int | None = None,
                   echo: Callable[[str], None] = print) -> dict[str, str]:
    """SMFER2013 and MFER2013 made from ``fer`` with maskgen (seed ``seed``) under ``out/data``; reused if there."""
    from maskgen.mfer import build_mfer
    from maskgen.pipeline import BuildConfig
    from maskgen.smfer import build_smfer

    from maskgen.io import file_sha256, manifest_path

    folder = build_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    smfer, mfer = folder / f"smfer2013-seed{seed}.csv", folder / f"mfer2013-seed{seed}.csv"
    fer_sha = file_sha256(fer)
    for path, manifest, key in ((smfer, manifest_path(smfer), "input_sha256"), (mfer, manifest_path(mfer), "fer_sha256")):
        if path.is_file():
            made_from = json.loads(Path(manifest).read_text()).get(key) if Path(manifest).is_file() else None
            if made_from != fer_sha:
                raise ValueError(f"{path} was not built from {fer} (its manifest says {made_from!r}); "
                                 "use another --out or remove it")
    if not smfer.is_file():
        echo(f"building {smfer} (maskgen, seed {seed})")
        build_smfer(fer, smfer, config=BuildConfig(seed=seed), jobs=jobs)
    if not mfer.is_file():
        echo(f"building {mfer} (seed {seed})")
        build_mfer(fer, smfer, mfer, seed=seed)
    return {"fer2013": str(fer), "smfer2013": str(smfer), "mfer2013": str(mfer)}


__all__ = ["build_datasets", "build_folder"]
