"""Pictures for people: label overlays, galleries, loss curves."""

from pathlib import Path

import numpy as np
from PIL import Image

from bdl.artifacts import atomic_path
from bdl.data.labels import IGNORE, PALETTE, colorize


def sample_indices(n: int, count: int) -> np.ndarray:
    """``count`` frame positions of ``n``, evenly spaced: the viewer and the galleries show the same frames in
    every round."""
    return np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int)) if n else np.zeros(0, int)


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


# Ignored pixels are dimmed and striped, not painted a colour: black is a legal-looking colour next to the
# palette's dark classes, and a reader must tell "no label here" from "labelled dark" at a glance.
HATCH = (200, 200, 200)


def hatch_ignored(picture: np.ndarray, label: np.ndarray, period: int = 8, width: int = 2) -> np.ndarray:
    """``picture`` with the pixels ``label`` ignores (255) dimmed to 40% and crossed by light diagonal stripes."""
    out = picture.copy()
    ignored = label == IGNORE
    rows, cols = np.indices(label.shape)
    out[ignored] = (out[ignored] * 0.4).astype(np.uint8)
    out[ignored & ((rows + cols) % period < width)] = HATCH
    return out


def label_overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Class colours blended over the image, ignored pixels hatched."""
    return hatch_ignored(overlay(image, label, alpha), label)


def label_colours(label: np.ndarray) -> np.ndarray:
    """Class colours, ignored pixels hatched over black."""
    return hatch_ignored(colorize(label), label)


def save_label_png(label: np.ndarray, path) -> None:
    """trainIds as a palette PNG, written atomically: viewers show the Cityscapes colours (255 black), and
    ``read_label_png`` gets the trainIds back."""
    img = Image.fromarray(label.astype(np.uint8))
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:len(PALETTE)] = PALETTE
    img.putpalette(palette.ravel().tolist())  # turns the L image into a P one, pixel values kept
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def read_label_png(path) -> np.ndarray:
    """The trainIds of a palette PNG written by ``save_label_png``."""
    with Image.open(path) as img:
        if img.mode != "P":
            raise ValueError(f"{path}: a {img.mode} PNG, not a palette PNG of trainIds")
        return np.asarray(img)
