"""Pictures for people: label overlays, galleries, loss curves."""

from pathlib import Path

import numpy as np
from PIL import Image

from bdl.artifacts import atomic_path
from bdl.data.labels import IGNORE, colorize


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    col = colorize(label).astype(np.float32)
    out = image.astype(np.float32)
    known = label != IGNORE
    out[known] = (1 - alpha) * out[known] + alpha * col[known]
    return out.astype(np.uint8)


def ignored_mask(label: np.ndarray) -> np.ndarray:
    """White where the pixel is ignored (255), black where it carries a label."""
    m = np.where(label == IGNORE, 255, 0).astype(np.uint8)
    return np.repeat(m[..., None], 3, axis=2)


def save_grid(rows: list[list[np.ndarray]], path, scale: int = 1, gap: int = 2) -> None:
    """Rows of equally sized HxWx3 tiles, ``gap`` white pixels apart, written atomically as PNG."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + gap) - gap, ncol * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            tile = np.asarray(Image.fromarray(tile).resize((w, h), Image.NEAREST))
            canvas[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = tile
    img = Image.fromarray(canvas)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def plot_curves(rows: list[dict], path, title: str) -> None:
    """One panel per loss term against the step, with a moving average over the raw points."""
    # the Figure API with the Agg canvas, not pyplot: no GUI backend search, ~0.3 s less per training stage
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = sorted({k for r in rows for k in r} - {"step"}) or ["(no losses logged)"]
    fig = Figure(figsize=(6, 1.8 * len(keys)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            x, y = map(np.asarray, zip(*pts))
            ax.plot(x, y, lw=0.6, alpha=0.4)
            k = max(1, len(y) // 20)
            ax.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), lw=1.4)
        ax.set_ylabel(key, fontsize=8)
    axes[0, 0].set_title(title, fontsize=9)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))
