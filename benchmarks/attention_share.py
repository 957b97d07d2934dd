"""Does training on masks move a model's attention to the eyes? Grad-CAM share in the mask and eye regions.

    python benchmarks/attention_share.py --data ../shared/data/fer2013.csv.gz \
        --masked /tmp/smfer2013.csv --models fer2013,mfer2013 --rows 1000

``--masked`` is the SMFER2013 built from ``--data`` (``maskgen build-smfer``; its ``.meta.csv``
sidecar beside it). For the first ``--rows`` PrivateTest rows with a mask, each model's Grad-CAM
of its last block (predicted class) is measured on the unmasked face and on its masked twin:
the share of the map inside the mask region and inside the eye region
(:mod:`fer_models.explain`), beside the regions' shares of the image area. ``--models`` takes
shipped weights names or checkpoint paths. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maskgen.cli_errors import at_least, run_script  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--masked", required=True)
    ap.add_argument("--models", default="fer2013,mfer2013")
    ap.add_argument("--rows", type=at_least(1), default=1000)
    args = ap.parse_args()

    from fer_models.explain import attention_shares, format_shares, read_sidecar_params
    from fer_models.checkpoint import load_model
    from maskgen.dataset import read_fer_csv

    t0 = time.perf_counter()
    fer, smfer = read_fer_csv(args.data), read_fer_csv(args.masked)
    params = read_sidecar_params(args.masked, len(fer))
    rows = [int(r) for r in np.flatnonzero(fer.usage == "PrivateTest") if params[r] is not None][:args.rows]
    table = {}
    for name in args.models.split(","):
        model, ckpt = load_model(name)
        config = ckpt.train_config()
        table[f"{config.model} ({name})"] = attention_shares(model, fer.images, smfer.images, params, rows)
    print(f"{len(rows)} PrivateTest faces of {Path(args.data).name} and their twins in {Path(args.masked).name}; "
          f"{time.perf_counter() - t0:.0f} s")
    print(format_shares(table))


if __name__ == "__main__":
    run_script(main)
