"""PyTorch eager vs onnxruntime (float32, int8) for a shipped model: latency, throughput, size, accuracy.

    python benchmarks/onnx_latency.py --weights fer2013 --data ../shared/data/fer2013.csv.gz

One process, one intra-op thread for every engine, timings interleaved round by round (so a
machine that slows down mid-run slows every engine alike): batch-1 latency (median over
``--repeats`` calls per round) and batch-256 throughput. With ``--data``: the export is verified
on 256 of its PrivateTest faces (max |logit difference|), int8 is calibrated on 512 Training
faces, and each engine's PrivateTest accuracy is printed (no test-time augmentation, so the
engines are compared on the same single view). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maskgen.cli_errors import at_least  # noqa: E402


def _time(fn, x, repeats: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="fer2013")
    ap.add_argument("--data", default=None, help="FER2013 CSV: verification faces, int8 calibration, accuracy")
    ap.add_argument("--rounds", type=at_least(1), default=5)
    ap.add_argument("--repeats", type=at_least(1), default=300, help="batch-1 calls per round")
    args = ap.parse_args()

    import torch

    from fer_models.data import to_float
    from fer_models.export import OnnxClassifier, export_onnx, max_abs_diff, quantize_int8, shipped_faces
    from fer_models.pretrained import load_weights, weights_path
    from fer_models.summary import machine_description
    from maskgen.io import file_sha256

    torch.set_num_threads(1)
    state = load_weights(args.weights)
    model, config = state.build_model(), state.train_config()
    model = model.float().eval()
    test = calib = None
    if args.data:
        from maskgen.dataset import read_fer_csv

        table = read_fer_csv(args.data)
        test = np.flatnonzero(table.usage == "PrivateTest")
        calib = table.images[np.flatnonzero(table.usage == "Training")[:512]]
        faces = table.images[test[:256]]
        images, labels = table.images[test], table.emotion[test]
    else:
        faces = shipped_faces(256)
        calib = faces
        images = labels = None
    tmp = Path(tempfile.mkdtemp())
    fp32 = export_onnx(state, tmp / "m.onnx", source_sha256=file_sha256(weights_path(args.weights)))
    diff = max_abs_diff(model, fp32.path, faces)
    int8 = quantize_int8(fp32.path, tmp / "m.int8.onnx", calib)
    ort32, ort8 = OnnxClassifier(fp32.path, threads=1), OnnxClassifier(int8, threads=1)

    def eager(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(to_float(torch.from_numpy(x[:, None].copy()))).numpy()

    engines = {"PyTorch eager fp32": eager, "onnxruntime fp32": ort32.logits, "onnxruntime int8": ort8.logits}
    x1, x256 = faces[:1], np.concatenate([faces] * (256 // len(faces) + 1))[:256]
    for fn in engines.values():  # warm-up
        for _ in range(20):
            fn(x1)
        fn(x256)
    lat: dict[str, list[float]] = {k: [] for k in engines}
    thr: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(args.rounds):
        for name, fn in engines.items():
            lat[name].append(_time(fn, x1, args.repeats))
            thr[name].append(256 / _time(fn, x256, 3))
    sizes = {"PyTorch eager fp32": Path(weights_path(args.weights)).stat().st_size,
             "onnxruntime fp32": fp32.bytes, "onnxruntime int8": int8.stat().st_size}
    acc = {}
    if images is not None:
        for name, fn in engines.items():
            preds = np.concatenate([fn(images[i:i + 256]).argmax(1) for i in range(0, len(images), 256)])
            acc[name] = float(np.mean(preds == labels))
    print(f"Machine: {machine_description()}; {args.weights} ({config.model}); 1 thread; "
          f"{args.rounds} rounds x {args.repeats} batch-1 calls, interleaved")
    print(f"export verified on {len(faces)} {'PrivateTest' if args.data else 'LFW'} faces: "
          f"max |logit difference| {diff:.2e}")
    print("| engine | batch-1 latency (ms, median of rounds) | batch-256 throughput (img/s) | file bytes "
          "| PrivateTest acc (no TTA) |")
    print("|---|--:|--:|--:|--:|")
    for name in engines:
        a = f"{100 * acc[name]:.2f} %" if name in acc else "-"
        print(f"| {name} | {1e3 * statistics.median(lat[name]):.3f} | {statistics.median(thr[name]):,.0f} "
              f"| {sizes[name]:,} | {a} |")


if __name__ == "__main__":
    from maskgen.cli_errors import run_script

    run_script(main)
