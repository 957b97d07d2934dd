"""Where a model looks: CBAM spatial attention, Grad-CAM, and how much of it falls on the mask.

For FER2013 rows and their SMFER2013 twins (same row, masked), :func:`explain_rows` returns
per face:

- the spatial attention map of every block that has one (``SpatialAttention.last_attention``,
  CBAM's second step), upsampled to 48x48;
- a Grad-CAM (Selvaraju et al. 2017) of the last block for the predicted class:
  ``relu(sum_c mean(dy/dA_c) * A_c)``, upsampled bilinearly to 48x48;
- the share of the Grad-CAM mass inside the **mask region** (where the re-rendered mask's
  alpha is over 0.5: the row's landmarks found again by the same chain as the build, its
  sampled parameters read from the SMFER2013 sidecar) and inside the **eye region** (the box
  around eyebrows and eyes of the same landmarks, 10 % of its width added on each side).
  The two regions' shares of the image area are reported beside them: a map that looks
  everywhere alike scores its area share.

:func:`attention_table` averages those shares over many rows for several models;
:func:`plot_explanations` draws the picture.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.dataset import SIDE

#: alpha above which a pixel counts as covered by the mask
MASK_ALPHA = 0.5
#: margin added on each side of the eyebrow + eye box, as a fraction of its width
EYE_MARGIN = 0.10


@dataclass
class Explanation:
    """One face: image, attention maps (name -> (48, 48) float32 in [0, 1]), Grad-CAM and region shares."""

    row: int
    image: np.ndarray
    label: str
    true_label: str
    maps: dict[str, np.ndarray]
    gradcam: np.ndarray
    mask_share: float
    eye_share: float


def regions(fer_image: np.ndarray, params_json: str) -> tuple[np.ndarray, np.ndarray]:
    """(mask region, eye region) boolean (48, 48) masks of one FER2013 row (see the module docstring)."""
    from maskgen.fits import MaskParams
    from maskgen.landmarks import landmarks_for_crop
    from maskgen.pipeline import apply_mask
    from maskgen.points import LANDMARK_GROUPS

    marks = landmarks_for_crop(fer_image)
    _, alpha = apply_mask(fer_image, marks.points, MaskParams.from_dict(json.loads(params_json)))
    idx = np.concatenate([LANDMARK_GROUPS[g] for g in ("right_eyebrow", "left_eyebrow", "eyes")])
    pts = marks.points[idx]
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    pad = EYE_MARGIN * (x1 - x0)
    yy, xx = np.mgrid[0:fer_image.shape[0], 0:fer_image.shape[1]]  # pixel centres at integers, as the points
    eyes = (xx >= x0 - pad) & (xx <= x1 + pad) & (yy >= y0 - pad) & (yy <= y1 + pad)
    return alpha > MASK_ALPHA, eyes


def read_sidecar_params(masked_csv: str | Path, rows: int) -> list[str | None]:
    """Per row of an SMFER2013 file, its mask's parameters (JSON text) from the ``.meta.csv`` sidecar, or None
    where the row was not masked (error, kept).

    Raises:
        FileNotFoundError: no sidecar beside ``masked_csv``.
        ValueError: naming the sidecar (and its line): no ``row_id`` / ``status`` / ``params`` column, a row_id
            that is not an integer, outside the rows or given twice, a masked row whose params are not a
            mask's parameters, or fewer rows than ``masked_csv`` (a truncated sidecar).
    """
    import csv

    from maskgen.fits import MaskParams
    from maskgen.smfer import sidecar_paths

    meta_path, _ = sidecar_paths(masked_csv)
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: the sidecar of {masked_csv} is needed for the mask regions")
    params: list[str | None] = [None] * rows
    seen = [False] * rows
    with open(meta_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("row_id", "status", "params") if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{meta_path}: not a build-smfer sidecar: no {', '.join(missing)} column "
                             f"(the .meta.csv that maskgen build-smfer writes beside {masked_csv})")
        for rec in reader:
            where = f"{meta_path} line {reader.line_num}"
            text = (rec["row_id"] or "").strip()
            try:
                k = int(text)
            except ValueError:
                raise ValueError(f"{where}: row_id {text[:40]!r} is not an integer") from None
            if not 0 <= k < rows:
                raise ValueError(f"{where}: row_id {k} outside the {rows} rows of {masked_csv}")
            if seen[k]:
                raise ValueError(f"{where}: row_id {k} given twice")
            seen[k] = True
            if (rec["status"] or "").startswith("masked") and rec["params"]:
                try:
                    MaskParams.from_dict(json.loads(rec["params"]))
                except (ValueError, TypeError, AttributeError) as exc:
                    reason = " ".join(str(exc).split())[:80]
                    raise ValueError(f"{where}: row_id {k}: params are not a mask's parameters ({reason})") from None
                params[k] = rec["params"]
    if not all(seen):
        first = seen.index(False)
        raise ValueError(f"{meta_path}: {sum(seen)} rows for the {rows} rows of {masked_csv} (truncated?): "
                         f"no row_id {first}")
    return params


def _upsample(maps: Any) -> np.ndarray:
    import torch.nn.functional as F

    return F.interpolate(maps, size=(SIDE, SIDE), mode="bilinear", align_corners=False)[:, 0].numpy()


def attention_and_gradcam(model: Any, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(predicted class (N,), spatial maps {block: (N, 48, 48)}, Grad-CAM (N, 48, 48) in [0, 1]) for uint8 faces."""
    import torch

    from fer_models.data import to_float
    from fer_models.layers import SpatialAttention, record_attention

    model = model.float().eval()
    if not hasattr(model, "forward_features") or not hasattr(model, "blocks"):
        raise ValueError(f"{type(model).__name__}: Grad-CAM needs a Mini-Xception-style model (blocks + head)")
    spatial = [(f"block {k + 1}", m) for k, block in enumerate(model.blocks)
               for m in block.modules() if isinstance(m, SpatialAttention)]
    x = to_float(torch.from_numpy(np.ascontiguousarray(images)[:, None]))
    acts: dict[str, torch.Tensor] = {}
    hook = model.blocks[-1].register_forward_hook(lambda _m, _i, out: acts.__setitem__("last", out))
    try:
        with torch.enable_grad(), record_attention(model):
            logits = model(x)
            pred = logits.argmax(1)
            a = acts["last"]
            grads = torch.autograd.grad(logits.gather(1, pred[:, None]).sum(), a)[0]
    finally:
        hook.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * a).sum(1, keepdim=True)).detach()
    cam = _upsample(cam)
    cam /= np.maximum(cam.reshape(len(cam), -1).max(1), 1e-12)[:, None, None]
    maps = {name: _upsample(m.last_attention.float()) for name, m in spatial if m.last_attention is not None}
    return pred.numpy(), maps, cam.astype(np.float32)


def _share(cam: np.ndarray, region: np.ndarray) -> float:
    total = float(cam.sum())
    return float((cam * region).sum() / total) if total > 0 else float("nan")


def explain_rows(model: Any, class_names: Sequence[str], fer_images: np.ndarray, masked_images: np.ndarray,
                 labels: np.ndarray, params: Sequence[str], rows: Sequence[int]) -> dict[str, list[Explanation]]:
    """Explanations of ``rows`` unmasked (``fer_images``) and masked (``masked_images``); see the module docstring."""
    from maskgen.dataset import EMOTIONS

    regs = [regions(fer_images[r], params[r]) for r in rows]
    same_classes = tuple(class_names) == tuple(EMOTIONS)  # the CSV's labels are FER2013's; a FER+ model's are not
    out: dict[str, list[Explanation]] = {}
    for kind, images in (("unmasked", fer_images), ("masked", masked_images)):
        batch = np.stack([images[r] for r in rows])
        pred, maps, cam = attention_and_gradcam(model, batch)
        out[kind] = [
            Explanation(row=int(r), image=batch[k], label=class_names[int(pred[k])],
                        true_label=EMOTIONS[int(labels[r])] if same_classes else "?",
                        maps={name: m[k] for name, m in maps.items()}, gradcam=cam[k],
                        mask_share=_share(cam[k], regs[k][0]), eye_share=_share(cam[k], regs[k][1]))
            for k, r in enumerate(rows)
        ]
    return out


def attention_shares(model: Any, fer_images: np.ndarray, masked_images: np.ndarray, params: Sequence[str],
                     rows: Sequence[int], batch: int = 256) -> dict[str, dict[str, float]]:
    """Mean Grad-CAM share in the mask and eye regions over ``rows``, unmasked and masked input."""
    rows = list(rows)
    regs = [regions(fer_images[r], params[r]) for r in rows]
    mask_area = float(np.mean([m.mean() for m, _ in regs]))
    eye_area = float(np.mean([e.mean() for _, e in regs]))
    result: dict[str, dict[str, float]] = {}
    for kind, images in (("unmasked", fer_images), ("masked", masked_images)):
        shares = []
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            _, _, cam = attention_and_gradcam(model, np.stack([images[r] for r in chunk]))
            shares += [(_share(c, regs[start + k][0]), _share(c, regs[start + k][1])) for k, c in enumerate(cam)]
        arr = np.array(shares, dtype=np.float64)
        # an all-zero map (no positive evidence for the predicted class anywhere) has no share: left out, counted
        result[kind] = {"mask_share": float(np.nanmean(arr[:, 0])), "eye_share": float(np.nanmean(arr[:, 1])),
                        "mask_area": mask_area, "eye_area": eye_area, "faces": len(rows),
                        "empty_maps": int(np.isnan(arr[:, 0]).sum())}
    return result


def plot_explanations(explained: dict[str, list[Explanation]], path: str | Path, title: str = "") -> Path:
    """A picture: per face two rows (unmasked, masked): the face, each block's spatial attention, Grad-CAM.

    Each spatial map is stretched to its own range (printed above it: a block whose attention is near
    1 everywhere passes its whole input); Grad-CAM is shown as computed (0..1).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_models.metrics import save_figure

    faces = len(explained["unmasked"])
    names = list(explained["unmasked"][0].maps) if faces else []
    cols = 2 + len(names)
    per_row = 2  # faces side by side
    grid_rows = 2 * ((faces + per_row - 1) // per_row)
    fig, axes = plt.subplots(grid_rows, cols * per_row, figsize=(1.25 * cols * per_row, 1.35 * grid_rows), dpi=100,
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(faces):
        for j, kind in enumerate(("unmasked", "masked")):
            e = explained[kind][k]
            r, c0 = 2 * (k // per_row) + j, cols * (k % per_row)
            ax = axes[r, c0]
            ax.imshow(e.image, cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{kind}: {e.label}\n(true {e.true_label})", fontsize=6)
            for i, name in enumerate(names):
                ax = axes[r, c0 + 1 + i]
                m = e.maps[name]
                lo, hi = float(m.min()), float(m.max())
                ax.imshow(e.image, cmap="gray", vmin=0, vmax=255)
                ax.imshow((m - lo) / max(hi - lo, 1e-6), cmap="jet", alpha=0.5, vmin=0, vmax=1)
                ax.set_title(f"spatial {name.split()[-1]}\n{lo:.2f}-{hi:.2f}", fontsize=6)
            ax = axes[r, c0 + cols - 1]
            ax.imshow(e.image, cmap="gray", vmin=0, vmax=255)
            ax.imshow(e.gradcam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_title(f"Grad-CAM: mask {100 * e.mask_share:.0f}%\neyes {100 * e.eye_share:.0f}%", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    return save_figure(fig, path)


def format_shares(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: per model and input, Grad-CAM share in the mask and eye regions beside their area shares."""
    lines = ["| model | input | faces | Grad-CAM in mask region | mask region's area | Grad-CAM in eye region "
             "| eye region's area |", "|---|---|--:|--:|--:|--:|--:|"]
    for model, kinds in table.items():
        for kind, s in kinds.items():
            faces = f"{s['faces']}" + (f" ({s['empty_maps']} empty)" if s.get("empty_maps") else "")
            lines.append(f"| {model} | {kind} | {faces} | {100 * s['mask_share']:.1f} % | {100 * s['mask_area']:.1f} % "
                         f"| {100 * s['eye_share']:.1f} % | {100 * s['eye_area']:.1f} % |")
    return "\n".join(lines)


__all__ = ["Explanation", "attention_and_gradcam", "attention_shares", "explain_rows", "format_shares",
           "plot_explanations", "read_sidecar_params", "regions"]
