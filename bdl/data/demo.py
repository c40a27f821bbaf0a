"""The offline demo domain pair: procedurally drawn street scenes in two looks.

Both domains share one layout generator (sky above a horizon, a road narrowing to a vanishing point,
sidewalks, buildings, trees, poles with signs and lights, cars, trucks, buses, persons, riders), so
the label statistics match, as they roughly do between GTA5 and Cityscapes. They differ in appearance
the way a game differs from a camera: the source is saturated, flat-shaded and noise-free; the target
has a mixed colour response (hues move towards other classes' source colours), varying exposure and
colour cast, sensor noise, optical blur and vignetting. A model that learnt the source's colours is
misled on the target; an image translator can undo most of the shift because it is a global,
smooth colour mapping plus noise.

The source is written in the GTA5 layout (palette PNG labels indexed by Cityscapes labelId) and the
target in the Cityscapes layout (``leftImg8bit``/``gtFine`` with ``*_labelIds.png``), so the demo runs
through the same readers as real data.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from bdl.data.labels import IGNORE, INSTANCE_TRAINIDS, NUM_CLASSES, PALETTE, TRAINID_TO_LABELID

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEG, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)

# The source ("game") look: one saturated base colour per class.
SOURCE_COLOURS = np.array([
    (92, 88, 104), (170, 150, 140), (160, 105, 80), (175, 165, 120), (125, 95, 60),
    (70, 70, 78), (40, 40, 40), (235, 205, 40), (55, 150, 45), (140, 185, 80),
    (85, 160, 240), (205, 55, 60), (185, 70, 190), (0, 0, 0), (205, 205, 215),
    (230, 175, 35), (60, 120, 130), (35, 35, 35), (50, 50, 140),
], dtype=np.float32)

# The camera's colour response: part channel rotation, part identity, desaturated. It moves the
# source's sky towards green, vegetation towards purple-grey, so a colour-only model is fooled.
_ROTATE = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=np.float32)
_GREY = np.full((3, 3), 1 / 3, dtype=np.float32)
TARGET_MIX = 0.45 * _ROTATE + 0.3 * np.eye(3, dtype=np.float32) + 0.25 * _GREY


def _rect(lab, obj, x0, y0, x1, y1, cls, oid):
    h, w = lab.shape
    x0, x1 = max(int(x0), 0), min(int(x1), w)
    y0, y1 = max(int(y0), 0), min(int(y1), h)
    if x1 > x0 and y1 > y0:
        lab[y0:y1, x0:x1] = cls
        obj[y0:y1, x0:x1] = oid


def _ellipse(lab, obj, cx, cy, rx, ry, cls, oid, yy, xx):
    m = ((xx - cx) / max(rx, 0.5)) ** 2 + ((yy - cy) / max(ry, 0.5)) ** 2 <= 1.0
    lab[m] = cls
    obj[m] = oid


def draw_layout(rng: np.random.Generator, width: int, height: int):
    """A label map (trainIds) and an object-id map (for per-object colour jitter) of one scene."""
    H, W = height, width
    lab = np.full((H, W), SKY, dtype=np.uint8)
    obj = np.zeros((H, W), dtype=np.int32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    oid = 1
    horizon = int(H * rng.uniform(0.38, 0.52))
    vx = W * rng.uniform(0.35, 0.65)

    # Ground: road as a trapezoid to the vanishing point, sidewalks beside it, terrain outside.
    below = yy >= horizon
    t = np.clip((yy - horizon) / max(H - horizon, 1), 0, 1)
    half_road = (0.04 + rng.uniform(0.30, 0.42) * t) * W
    half_walk = half_road + (0.02 + rng.uniform(0.12, 0.2) * t) * W
    d = np.abs(xx - vx)
    lab[below] = TERRAIN
    lab[below & (d < half_walk)] = SIDEWALK
    lab[below & (d < half_road)] = ROAD

    # Buildings along the skyline with gaps; some low walls; optional fence at their foot.
    x = -rng.uniform(0, 10)
    while x < W:
        bw = rng.uniform(0.08, 0.25) * W
        kind = rng.choice(["building", "building", "building", "wall", "gap"])
        if kind != "gap":
            top = horizon - rng.uniform(0.12, 0.4) * H if kind == "building" else horizon - rng.uniform(0.04, 0.08) * H
            base = horizon + rng.uniform(0.0, 0.05) * H
            _rect(lab, obj, x, top, x + bw, base, BUILDING if kind == "building" else WALL, oid)
            oid += 1
        x += bw
    if rng.random() < 0.5:
        fx0 = rng.uniform(0, 0.5) * W
        _rect(lab, obj, fx0, horizon - 0.05 * H, fx0 + rng.uniform(0.15, 0.4) * W, horizon + 0.02 * H, FENCE, oid)
        oid += 1

    # Trees: trunk and crown are both vegetation, as in Cityscapes.
    for _ in range(rng.integers(1, 5)):
        cx = rng.uniform(0, W)
        cy = horizon - rng.uniform(0.05, 0.25) * H
        r = rng.uniform(0.05, 0.13) * W
        _rect(lab, obj, cx - 1, cy, cx + 1, horizon + 0.04 * H, VEG, oid)
        _ellipse(lab, obj, cx, cy, r, r * 0.8, VEG, oid, yy, xx)
        oid += 1

    # Poles on the sidewalk, some carrying a sign or a traffic light.
    for _ in range(rng.integers(1, 4)):
        side = rng.choice([-1, 1])
        gy = horizon + rng.uniform(0.1, 0.5) * (H - horizon)
        tt = (gy - horizon) / max(H - horizon, 1)
        gx = vx + side * ((0.04 + 0.36 * tt) * W + rng.uniform(0.01, 0.05) * W)
        ph = (0.15 + 0.5 * tt) * H
        pw = max(1.0, 2.0 * tt + 0.8)
        _rect(lab, obj, gx, gy - ph, gx + pw, gy, POLE, oid)
        oid += 1
        top = rng.random()
        if top < 0.45:
            s = max(2.0, 5 * tt + 2)
            _rect(lab, obj, gx - s / 2, gy - ph - s, gx + s / 2 + pw, gy - ph + 1, SIGN, oid)
        elif top < 0.75:
            s = max(2.0, 3 * tt + 1.5)
            _rect(lab, obj, gx - s / 2, gy - ph - 2 * s, gx + s / 2 + pw, gy - ph + 1, LIGHT, oid)
        oid += 1

    # Road users, far to near so nearer ones occlude farther ones.
    agents = []
    for _ in range(rng.integers(1, 6)):
        agents.append(("vehicle", horizon + rng.uniform(0.08, 0.85) * (H - horizon)))
    for _ in range(rng.integers(0, 4)):
        agents.append(("person", horizon + rng.uniform(0.1, 0.8) * (H - horizon)))
    for kind, gy in sorted(agents, key=lambda a: a[1]):
        tt = (gy - horizon) / max(H - horizon, 1)
        if kind == "vehicle":
            cls = rng.choice([CAR, CAR, CAR, CAR, TRUCK, BUS])
            cw = (0.06 + 0.3 * tt) * W * (1.5 if cls != CAR else 1.0)
            ch = cw * (0.45 if cls == CAR else 0.8)
            cx = vx + rng.uniform(-0.8, 0.8) * (0.04 + 0.36 * tt) * W
            _rect(lab, obj, cx - cw / 2, gy - ch * 0.6, cx + cw / 2, gy, cls, oid)
            _rect(lab, obj, cx - cw * 0.35, gy - ch, cx + cw * 0.35, gy - ch * 0.55, cls, oid)
        else:
            side = rng.choice([-1, 1])
            cx = vx + side * (0.04 + 0.36 * tt + 0.06 * tt) * W
            ph = (0.08 + 0.35 * tt) * H
            riding = rng.random() < 0.25
            if riding:
                wheel = BICYCLE if rng.random() < 0.6 else MOTORCYCLE
                _rect(lab, obj, cx - ph * 0.35, gy - ph * 0.35, cx + ph * 0.35, gy, wheel, oid)
                oid += 1
                _ellipse(lab, obj, cx, gy - ph * 0.65, ph * 0.12, ph * 0.3, RIDER, oid, yy, xx)
            else:
                _ellipse(lab, obj, cx, gy - ph * 0.45, ph * 0.14, ph * 0.45, PERSON, oid, yy, xx)
            _ellipse(lab, obj, cx, gy - ph * 0.95, ph * 0.09, ph * 0.09, RIDER if riding else PERSON, oid, yy, xx)
        oid += 1
    return lab, obj


def _paint(rng, lab, obj, textured_noise: float):
    """Base colours with per-object jitter and class textures (windows, lane marks, foliage, sky gradient)."""
    H, W = lab.shape
    img = SOURCE_COLOURS[lab.clip(0, NUM_CLASSES - 1)].copy()
    jitter = rng.normal(0, 12, size=(obj.max() + 1, 3)).astype(np.float32)
    img += jitter[obj] * (obj > 0)[..., None]
    cars = lab == CAR
    if cars.any():  # cars come in any colour: their class is in the shape, not the paint
        car_colours = rng.uniform(20, 235, size=(obj.max() + 1, 3)).astype(np.float32)
        img[cars] = car_colours[obj[cars]]
    yy, xx = np.mgrid[0:H, 0:W]
    windows = (lab == BUILDING) & ((yy % 6) < 3) & ((xx % 5) < 2)
    img[windows] *= 0.55
    lanes = (lab == ROAD) & (np.abs(xx - W / 2 - (yy - H / 2) * 0.0) < 1) & ((yy // 3) % 2 == 0)
    img[lanes] = (230, 230, 230)
    veg = lab == VEG
    img[veg] *= rng.uniform(1 - textured_noise, 1 + textured_noise, size=(int(veg.sum()), 1)).astype(np.float32)
    sky = lab == SKY
    img[sky] *= (0.85 + 0.3 * yy[sky] / H)[:, None]
    img *= (0.8 + 0.4 * yy / H)[..., None]  # light from above: the ground darkens less than the facades
    return img


def render_source(rng, lab, obj) -> np.ndarray:
    return np.clip(_paint(rng, lab, obj, 0.25), 0, 255).astype(np.uint8)


def render_target(rng, lab, obj) -> np.ndarray:
    img = _paint(rng, lab, obj, 0.1)
    img = img @ TARGET_MIX.T
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.8, 1.1)  # exposure curve
    img *= rng.uniform(0.75, 1.15) * (1 + rng.normal(0, 0.06, size=3))  # exposure, colour cast
    H, W = lab.shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img *= (1 - 0.35 * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2))[..., None]  # vignetting
    img = np.clip(img, 0, 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9))), np.float32)
    img += rng.normal(0, 6, size=img.shape)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def _palette_png(ids: np.ndarray) -> Image.Image:
    img = Image.fromarray(ids, mode="P")
    pal = np.zeros((256, 3), dtype=np.uint8)
    for tid in range(NUM_CLASSES):
        pal[TRAINID_TO_LABELID[tid]] = PALETTE[tid]
    img.putpalette(pal.ravel().tolist())
    return img


def instance_ids(lab: np.ndarray, obj: np.ndarray) -> Image.Image:
    """Cityscapes' ``*_instanceIds.png`` (16 bit): labelId * 1000 + instance for the per-instance classes, the
    labelId elsewhere. Cityscapes' own evaluation scripts read it beside the labelIds (for nIoU)."""
    ids = TRAINID_TO_LABELID[lab].astype(np.int32)
    things = np.isin(lab, INSTANCE_TRAINIDS)
    instance = np.unique(obj[things], return_inverse=True)[1].reshape(-1) if things.any() else np.zeros(0, int)
    ids[things] = ids[things] * 1000 + instance
    return Image.fromarray(ids.astype(np.uint16))


def generate(out: Path, n_source: int, n_target_train: int, n_target_val: int,
             width: int = 128, height: int = 64, seed: int = 0) -> dict:
    """Write ``out/source`` (GTA5 layout) and ``out/target`` (Cityscapes layout); deterministic in ``seed``."""
    out = Path(out)
    rng_src = np.random.default_rng([seed, 1])
    rng_tgt = np.random.default_rng([seed, 2])
    (out / "source" / "images").mkdir(parents=True, exist_ok=True)
    (out / "source" / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n_source):
        lab, obj = draw_layout(rng_src, width, height)
        name = f"{i + 1:05d}.png"
        Image.fromarray(render_source(rng_src, lab, obj)).save(out / "source" / "images" / name)
        _palette_png(TRAINID_TO_LABELID[lab]).save(out / "source" / "labels" / name)
    for split, n in (("train", n_target_train), ("val", n_target_val)):
        city = f"demo{split}"
        img_dir = out / "target" / "leftImg8bit" / split / city
        gt_dir = out / "target" / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            lab, obj = draw_layout(rng_tgt, width, height)
            stem = f"{city}_{i:06d}_000019"
            Image.fromarray(render_target(rng_tgt, lab, obj)).save(img_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(TRAINID_TO_LABELID[lab], mode="L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
            instance_ids(lab, obj).save(gt_dir / f"{stem}_gtFine_instanceIds.png")
    assert IGNORE == 255
    return {"source": n_source, "target_train": n_target_train, "target_val": n_target_val,
            "width": width, "height": height, "seed": seed}
