"""ONNX export of a trained model, and an onnxruntime classifier that reads what the export stores.

:func:`export_onnx` writes a float32 graph with a dynamic batch dimension (input ``image``,
(N, 1, 48, 48) float32 already scaled; output ``logits``, (N, classes)). BatchNorm is folded
into the convolutions before it is written (the file holds no ``BatchNormalization`` node;
checked). The ONNX metadata carries what a user needs to feed it: the class names, the input
size and layout, and the pixel scaling ``x = pixel * scale + offset``, plus the model name
and the source checkpoint's sha256. :class:`OnnxClassifier` reads that metadata back, so it
takes uint8 faces like every other fer_models entry point.

:func:`quantize_int8` makes a static-int8 copy calibrated on faces of a CSV; whether it is
worth keeping is measured, not assumed (``benchmarks/onnx_latency.py``).

onnx and onnxruntime are an optional extra: ``pip install "maskgen[onnx]"``.
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer_models.data import PIXEL_OFFSET, PIXEL_SCALE
from maskgen.dataset import SIDE

if TYPE_CHECKING:
    from fer_models.checkpoint import Checkpoint

INPUT_NAME, OUTPUT_NAME = "image", "logits"
OPSET = 17
#: metadata key prefix of everything fer_models stores in an exported model
META_PREFIX = "fer_models."
#: verification tolerance: max |logit difference| between onnxruntime and PyTorch
MAX_ABS_DIFF = 1e-4
EXTRA_HINT = 'ONNX support needs the optional extra: pip install "maskgen[onnx]" (onnx, onnxruntime)'
#: fewest faces a static int8 calibration is made from (fewer give meaningless activation ranges)
MIN_CALIBRATION = 16


def _require() -> tuple[Any, Any]:
    from maskgen.cli_errors import MissingExtra

    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise MissingExtra(EXTRA_HINT) from None
    return onnx, onnxruntime


@dataclass(frozen=True)
class ExportInfo:
    """What :func:`export_onnx` wrote."""

    path: Path
    model: str
    class_names: tuple[str, ...]
    bytes: int
    batchnorm_nodes: int
    max_abs_diff: float | None


def export_onnx(ckpt: Checkpoint, path: str | os.PathLike, *, source_sha256: str = "",
                check_images: np.ndarray | None = None, opset: int = OPSET) -> ExportInfo:
    """Write checkpoint ``ckpt`` as ONNX at ``path`` (atomically); see the module docstring.

    Args:
        check_images: (N, 48, 48) or (N, 1, 48, 48) uint8 faces; when given, onnxruntime's logits
            are compared with PyTorch's and a difference over :data:`MAX_ABS_DIFF` is an error.

    Raises:
        ValueError: a BatchNorm left unfolded, or logits that do not match.
    """
    import torch

    from maskgen.io import atomic_write

    onnx, _ = _require()
    model, config = ckpt.build_model(), ckpt.train_config()
    model = model.float().eval()
    class_names = tuple(ckpt.class_names)
    dummy = torch.zeros(2, 1, SIDE, SIDE)
    path = Path(path)
    with atomic_write(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        # the TorchScript-based exporter folds BatchNorm into the preceding conv in eval mode
        import inspect

        legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        torch.onnx.export(model, (dummy,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, **legacy)
        proto = onnx.load(str(tmp))
        bn = sum(node.op_type == "BatchNormalization" for node in proto.graph.node)
        if bn:
            raise ValueError(f"{bn} BatchNormalization node(s) were not folded into a convolution")
        meta = {
            "model": config.model, "model_kwargs": json.dumps(config.model_kwargs),
            "class_names": json.dumps(list(class_names)),
            "input": json.dumps({"name": INPUT_NAME, "shape": ["batch", 1, SIDE, SIDE], "layout": "NCHW",
                                 "dtype": "float32", "color": "gray", "scale": PIXEL_SCALE, "offset": PIXEL_OFFSET,
                                 "formula": "x = pixel * scale + offset, pixel in 0..255"}),
            "output": json.dumps({"name": OUTPUT_NAME, "meaning": "logits; softmax gives probabilities"}),
            "source_sha256": source_sha256, "epoch": str(ckpt.epoch),
            "face_crop": "48x48 gray, aligned to FER2013's mean face (maskgen.crops.fer_crop)",
        }
        del proto.metadata_props[:]
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = META_PREFIX + key, str(value)
        proto.producer_name = "fer_models"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        diff = None
        if check_images is not None:
            diff = max_abs_diff(model, str(tmp), check_images)
            if diff > MAX_ABS_DIFF:
                raise ValueError(f"onnxruntime logits differ from PyTorch's by {diff:.2e} (> {MAX_ABS_DIFF:g})")
    return ExportInfo(path, config.model, class_names, path.stat().st_size, bn, diff)


def shipped_faces(n: int = 256) -> np.ndarray:
    """(n, 48, 48) uint8 real faces without FER2013: scikit-image's 100 LFW faces, their mirror images,
    then both shifted by 2 pixels, as many as ``n`` needs (RuntimeError without scikit-image)."""
    from maskgen.demo import LFW_FACES, lfw_faces

    faces = lfw_faces(LFW_FACES)
    views = [faces, faces[:, :, ::-1]]
    views += [np.roll(v, 2, axis=axis) for axis in (1, 2) for v in views[:2]]
    return np.ascontiguousarray(np.concatenate(views)[:n])


def _as_batch(images: np.ndarray, scale: float = PIXEL_SCALE, offset: float = PIXEL_OFFSET) -> np.ndarray:
    """uint8 (N, 48, 48) or (N, 1, 48, 48) -> float32 (N, 1, 48, 48): ``pixel * scale + offset`` (training's)."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise TypeError(f"expected uint8 faces, got {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1:] != (1, SIDE, SIDE):
        raise ValueError(f"expected (N, {SIDE}, {SIDE}) or (N, 1, {SIDE}, {SIDE}) faces, got {x.shape}")
    return (x.astype(np.float32) * np.float32(scale) + np.float32(offset)).astype(np.float32)


def max_abs_diff(model: Any, onnx_path: str | os.PathLike, images: np.ndarray, batch: int = 256) -> float:
    """Largest |logit| difference between PyTorch ``model`` (float32, CPU) and the ONNX file on ``images``."""
    import torch

    session = OnnxClassifier(onnx_path, threads=None)
    model = model.float().eval()
    worst = 0.0
    for start in range(0, len(images), batch):
        x = _as_batch(images[start:start + batch])
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        worst = max(worst, float(np.abs(session.logits_float(x) - ref).max()))
    return worst


class OnnxClassifier:
    """An exported model under onnxruntime: uint8 faces in, logits / probabilities out."""

    def __init__(self, path: str | os.PathLike, threads: int | None = 1) -> None:
        _, ort = _require()
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(errno.ENOENT, "no such ONNX file", str(path))
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, ...): a bad file
            if not type(exc).__module__.startswith("onnxruntime"):
                raise
            reason = str(exc).split("failed:", 1)[-1].strip() or type(exc).__name__
            raise ValueError(f"{path}: not a readable ONNX model ({reason})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k[len(META_PREFIX):]: v for k, v in meta.items() if k.startswith(META_PREFIX)}
        if "class_names" not in self.metadata:
            raise ValueError(f"{path}: not a fer_models export (no {META_PREFIX}class_names metadata)")
        self.class_names: tuple[str, ...] = _class_names(path, self.metadata["class_names"],
                                                         self.session.get_outputs()[0].shape)
        self.model = self.metadata.get("model", "?")
        try:
            spec = json.loads(self.metadata.get("input", "{}"))
            self.scale = float(spec.get("scale", PIXEL_SCALE))
            self.offset = float(spec.get("offset", PIXEL_OFFSET))
        except (ValueError, TypeError, AttributeError):
            raise ValueError(f"{path}: {META_PREFIX}input metadata is not the JSON fer_models export writes") from None
        if not (np.isfinite(self.scale) and np.isfinite(self.offset)):
            raise ValueError(f"{path}: {META_PREFIX}input metadata: scale / offset must be finite numbers")
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape)[1:] != [1, SIDE, SIDE]:
            raise ValueError(f"{path}: input {[(i.name, i.shape) for i in inputs]}, expected one "
                             f"(batch, 1, {SIDE}, {SIDE}) image input")
        self.input_name = inputs[0].name

    def logits_float(self, x: np.ndarray) -> np.ndarray:
        """Logits for already-scaled float32 input (N, 1, 48, 48)."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, classes) float32 logits of uint8 faces (N, 48, 48) or (N, 1, 48, 48)."""
        return self.logits_float(_as_batch(images, self.scale, self.offset))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        z = self.logits(images).astype(np.float64)
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(1, keepdims=True)).astype(np.float32)


def _class_names(path: str | os.PathLike, text: str, output_shape: list[Any]) -> tuple[str, ...]:
    """The class names stored in an export's metadata, checked against the width of its output."""
    try:
        names = json.loads(text)
    except ValueError:
        names = None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names) \
            or len(set(names)) != len(names):
        raise ValueError(f"{path}: {META_PREFIX}class_names metadata is not a list of distinct names: {text[:80]!r}")
    width = output_shape[-1] if output_shape else None
    if isinstance(width, int) and width != len(names):
        raise ValueError(f"{path}: {META_PREFIX}class_names lists {len(names)} classes but the model outputs "
                         f"{width} logits")
    return tuple(names)


def quantize_int8(onnx_path: str | os.PathLike, out_path: str | os.PathLike, calibration: np.ndarray) -> Path:
    """Static int8 (QDQ, per-channel weights) copy of an exported model, calibrated on uint8 faces.

    Raises:
        ValueError: fewer than :data:`MIN_CALIBRATION` calibration faces.
    """
    if len(calibration) < MIN_CALIBRATION:
        raise ValueError(f"int8 calibration needs at least {MIN_CALIBRATION} faces, got {len(calibration)}")
    _, _ = _require()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from maskgen.io import atomic_write

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([_as_batch(calibration[i:i + 64]) for i in range(0, len(calibration), 64)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    out_path = Path(out_path)
    with atomic_write(out_path) as tmp:
        pre = Path(str(tmp) + ".pre.onnx")
        try:
            quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        finally:
            pre.unlink(missing_ok=True)
        # quantize_static drops custom metadata: copy ours over
        import onnx

        src, dst = onnx.load(str(onnx_path)), onnx.load(str(tmp))
        del dst.metadata_props[:]
        for entry in src.metadata_props:
            dst.metadata_props.add().CopyFrom(entry)
        extra = dst.metadata_props.add()
        extra.key, extra.value = META_PREFIX + "quantization", f"static int8 QDQ, per-channel, {len(calibration)} faces"
        onnx.save(dst, str(tmp))
    return out_path


__all__ = ["ExportInfo", "MAX_ABS_DIFF", "MIN_CALIBRATION", "OnnxClassifier", "export_onnx", "max_abs_diff", "quantize_int8",
           "shipped_faces"]
