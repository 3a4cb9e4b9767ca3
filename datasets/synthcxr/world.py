"""SynthCXR anatomy: a procedural frontal (PA/AP) or lateral chest radiograph, drawn with numpy + OpenCV.

Geometry lives in a *body frame*: origin at the thorax centre, x to the image right, y down, one
unit = half the width of the thoracic cage. ``Body`` holds the continuous parameters (position,
size, rotation, lung shape, heart and mediastinum size, densities); :func:`build_canvas` turns them
into density layers (0 = air, larger = denser = brighter) on an ``S×S`` pixel grid. Findings
(``findings.py``) add to those layers through exact masks; :func:`expose` maps density to a uint8
image with exposure jitter, heel effect, noise and confounding marks that carry no label.

The patient's right is on the image left (radiological convention), so ``side="right"`` means body
x < 0.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np

#: Sides in body-frame sign: the patient's right lung is on the image left.
SIDE_SIGN = {"right": -1.0, "left": 1.0}
#: Where the upper and lower lung zones meet, in body-frame y (apex ≈ -1.05, domes ≈ 0.6).
ZONE_SPLIT_Y = -0.2
#: Density scale mapped to full white before contrast jitter (soft tissue ≈ 0.55 lands near 0.73).
DENSITY_WHITE = 0.75


@dataclass(frozen=True)
class Body:
    """Continuous anatomy of one radiograph (fractions of the image unless said otherwise).

    ``ctr`` is the true cardiothoracic ratio and ``mediastinum`` the upper mediastinal half-width
    in body units; the population decides them (labels are thresholds on them), AP views then
    magnify the heart as a real AP projection does.
    """

    cx: float = 0.5
    cy: float = 0.52
    half_width: float = 0.36
    aspect: float = 1.05
    angle: float = 0.0
    lung_width: float = 1.0
    inspiration: float = 1.0
    dome_right: float = 0.25
    dome_left: float = 0.22
    ctr: float = 0.45
    heart_height: float = 0.42
    heart_shift: float = 0.11
    mediastinum: float = 0.17
    soft_tissue: float = 0.55
    lung_air: float = 0.31
    vessel_amp: float = 0.06
    rib_amp: float = 0.11
    female: bool = False
    view: str = "PA"


def sample_body(rng: np.random.Generator, *, female: bool, view: str, ctr: float, mediastinum: float) -> Body:
    """A random patient habitus; ``ctr``/``mediastinum`` come from the population (label thresholds)."""
    return Body(
        cx=0.5 + rng.normal(0, 0.025), cy=0.52 + rng.normal(0, 0.03),
        half_width=rng.uniform(0.31, 0.40), aspect=rng.uniform(0.95, 1.15), angle=rng.normal(0, 3.0),
        lung_width=rng.uniform(0.92, 1.04), inspiration=rng.uniform(0.85, 1.1),
        dome_right=rng.uniform(0.18, 0.34), dome_left=rng.uniform(0.15, 0.30),
        ctr=ctr, heart_height=rng.uniform(0.36, 0.48), heart_shift=rng.normal(0.11, 0.04), mediastinum=mediastinum,
        soft_tissue=rng.uniform(0.42, 0.68), lung_air=rng.uniform(0.22, 0.38),
        vessel_amp=rng.uniform(0.04, 0.08), rib_amp=rng.uniform(0.05, 0.1), female=female, view=view,
    )


def jitter_body(rng: np.random.Generator, body: Body, *, view: str) -> Body:
    """The same patient on another film: new positioning, inspiration and exposure of the soft tissue."""
    return replace(
        body, cx=body.cx + rng.normal(0, 0.015), cy=body.cy + rng.normal(0, 0.015),
        half_width=body.half_width * rng.uniform(0.96, 1.04), angle=rng.normal(0, 3.0),
        inspiration=float(np.clip(body.inspiration + rng.normal(0, 0.05), 0.8, 1.15)), view=view,
    )


@dataclass
class Canvas:
    """Density layers and geometry of one frontal image (all arrays ``S×S``).

    - ``base``: float32 density of the anatomy without lung markings.
    - ``air``: float32, how much the lungs subtract at each pixel (fluid "refills" it).
    - ``vessels``: float32 lung markings; ``vessel_keep`` multiplies them (pneumothorax and
      emphysema remove markings there).
    - ``lung``: {"right", "left"} → bool visible lung (where the lung has air: heart and
      mediastinum excluded); ``lung_full`` the whole lung outline.
    - ``heart``, ``mediastinum``, ``body_mask``: bool masks.
    - ``bx``, ``by``: body-frame coordinates of every pixel.
    """

    size: int
    body: Body
    matrix: np.ndarray
    offset: np.ndarray
    bx: np.ndarray
    by: np.ndarray
    base: np.ndarray
    air: np.ndarray
    vessels: np.ndarray
    vessel_keep: np.ndarray
    bones: np.ndarray
    lung: dict
    lung_full: dict
    heart: np.ndarray
    mediastinum: np.ndarray
    body_mask: np.ndarray
    domes: dict
    ribs: list = field(default_factory=list)

    @property
    def unit_px(self) -> float:
        """Pixels per body unit (horizontal)."""
        return float(self.body.half_width * self.size)

    def to_px(self, points: np.ndarray) -> np.ndarray:
        """Body-frame points N×2 → pixel coordinates N×2 (x, y)."""
        return points @ self.matrix.T + self.offset

    def region(self, side: str, zone: str | None = None) -> np.ndarray:
        """Visible lung of ``side`` ("right", "left", "bilateral") in ``zone`` ("upper", "lower", else all)."""
        sides = ("right", "left") if side in ("bilateral", "none") else (side,)
        mask = np.zeros_like(self.heart)
        for s in sides:
            mask |= self.lung[s]
        if zone == "upper":
            mask &= self.by < ZONE_SPLIT_Y
        elif zone == "lower":
            mask &= self.by >= ZONE_SPLIT_Y
        return mask


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _chaikin_operator(count: int, iterations: int) -> np.ndarray:
    """Chaikin corner cutting is linear in the control points: the (M × count) matrix doing it."""
    op = np.eye(count)
    for _ in range(iterations):
        n = op.shape[0]
        step = np.zeros((2 * (n - 1) + 2, n))
        step[0, 0] = step[-1, -1] = 1.0
        rows = np.arange(n - 1)
        step[1 + 2 * rows, rows], step[1 + 2 * rows, rows + 1] = 0.75, 0.25
        step[2 + 2 * rows, rows], step[2 + 2 * rows, rows + 1] = 0.25, 0.75
        op = step @ op
    return op


def chaikin(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Smooth an open polyline (N×2) by corner cutting, keeping both end points."""
    pts = np.asarray(points, dtype=np.float64)
    return _chaikin_operator(len(pts), iterations) @ pts


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Band-limited noise, float32 ``size×size``, roughly zero mean and unit variance."""
    import cv2

    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    out = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return out / max(float(out.std()), 1e-6)


def fill_polygon(canvas: Canvas, points: np.ndarray, value: int = 1, target: np.ndarray | None = None) -> np.ndarray:
    """Rasterise a body-frame polygon (sub-pixel precision) into a uint8 mask."""
    import cv2

    out = np.zeros((canvas.size, canvas.size), np.uint8) if target is None else target
    px = np.round(canvas.to_px(points) * 16).astype(np.int32)
    cv2.fillPoly(out, [px], int(value), lineType=cv2.LINE_8, shift=4)
    return out


def draw_polyline(canvas: Canvas, points: np.ndarray, thickness_units: float, value: int, target: np.ndarray) -> None:
    """Anti-aliased thick polyline (body-frame points) into a uint8 layer."""
    import cv2

    px = np.round(canvas.to_px(points) * 16).astype(np.int32)
    thick = max(1, int(round(thickness_units * canvas.unit_px)))
    cv2.polylines(target, [px], False, int(value), thickness=thick, lineType=cv2.LINE_AA, shift=4)


def soft(mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """float32 version of a bool/uint8 mask with blurred edges."""
    import cv2

    m = mask.astype(np.float32)
    if sigma_px <= 0:
        return m
    return cv2.GaussianBlur(m, (0, 0), sigma_px)


@functools.lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = np.arange(size, dtype=np.float32)
    return coords[None, :], coords[:, None]


def _frame(body: Body, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Affine body→pixel matrix and offset, and body-frame coordinates of every pixel."""
    unit = body.half_width * size
    a = math.radians(body.angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    matrix = rot @ np.diag([unit, unit * body.aspect])
    offset = np.array([body.cx * size, body.cy * size])
    inv = np.linalg.inv(matrix).astype(np.float32)
    gx, gy = _pixel_grid(size)
    dx, dy = gx - np.float32(offset[0]), gy - np.float32(offset[1])
    bx = inv[0, 0] * dx + inv[0, 1] * dy
    by = inv[1, 0] * dx + inv[1, 1] * dy
    return matrix, offset, bx.astype(np.float32), by.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# anatomy
# ------------------------------------------------------------------------------------------------
def lung_outline(body: Body, side: str) -> tuple[np.ndarray, float, float]:
    """Closed polygon of one lung in body units, plus the costophrenic-angle and dome heights."""
    sg = SIDE_SIGN[side]
    lw = body.lung_width
    y_cp = 0.82 * body.inspiration + (0.05 if side == "left" else 0.0)
    y_dome = y_cp - (body.dome_left if side == "left" else body.dome_right)
    medial_x = 0.12 if side == "right" else 0.16
    lateral = chaikin(np.array([
        (0.30, -1.04), (0.58, -0.97), (0.82, -0.62), (0.94 * lw, -0.1), (0.96 * lw, 0.4), (0.91 * lw, y_cp),
    ]))
    dome = chaikin(np.array([
        (0.91 * lw, y_cp), (0.72, y_dome + 0.04), (0.48, y_dome), (0.24, y_dome + 0.06), (medial_x, y_dome + 0.14),
    ]))
    medial = chaikin(np.array([
        (medial_x, y_dome + 0.14), (medial_x - 0.01, -0.3), (0.13, -0.78), (0.22, -1.0), (0.30, -1.04),
    ]))
    pts = np.vstack([lateral, dome[1:], medial[1:-1]])
    pts[:, 0] *= sg
    return pts, y_cp, y_dome


def _heart(body: Body, bx: np.ndarray, by: np.ndarray, y_dome: float) -> tuple[np.ndarray, np.ndarray]:
    """Heart as a tilted ellipse; returns (soft float32, bool). Width = CTR × thoracic width; its
    height and position vary independently of the CTR (so size alone does not give the label away)."""
    magnify = 1.1 if body.view == "AP" else 1.0  # AP projection magnifies the heart (~10 %)
    a = body.ctr * 0.95 * body.lung_width * magnify
    b = body.heart_height * magnify
    hx, hy = body.heart_shift, y_dome - 0.05
    t = math.radians(-18.0)
    u = (bx - hx) * math.cos(t) + (by - hy) * math.sin(t)
    v = -(bx - hx) * math.sin(t) + (by - hy) * math.cos(t)
    q = (u / a) ** 2 + (v / b) ** 2
    return np.clip((1.0 - q) * 5.0, 0.0, 1.0), q <= 0.9


def _mediastinum(canvas: Canvas) -> np.ndarray:
    """Upper mediastinum (with aortic knob) as a uint8 mask."""
    body = canvas.body
    m = body.mediastinum
    pts = np.array([(-m, -1.6), (m, -1.6), (m * 0.95, -0.75), (m + 0.08, -0.5), (m, -0.3), (m * 0.9, 0.2),
                    (-m * 0.9, 0.2), (-m * 1.05, -0.5), (-m, -1.6)])
    return fill_polygon(canvas, chaikin(pts, 2))


def _torso(body: Body, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """Soft-tissue density: elliptic-cylinder torso, neck, shoulders and arms (float32)."""
    ax, ay = np.abs(bx / 1.3), np.abs((by - 0.35) / 1.6)
    q = ax * ax * ax + ay * ay * ay
    torso = np.clip((1.0 - q) * 6.0, 0, 1) * np.sqrt(np.clip(1.0 - (bx / 1.35) ** 2, 0.05, 1.0))
    neck = np.clip((0.38 - np.abs(bx)) * 12.0, 0, 1) * (by < -1.0)
    shoulders = np.zeros_like(bx)
    for sg in (-1.0, 1.0):
        qs = ((bx - sg * 1.0) / 0.62) ** 2 + ((by + 1.25) / 0.32) ** 2
        qa = ((bx - sg * 1.52) / 0.24) ** 2 + ((by + 0.2) / 1.1) ** 2
        shoulders = np.maximum(shoulders, np.clip((1.0 - np.minimum(qs, qa)) * 4.0, 0, 1) * 0.8)
    dens = np.maximum(np.maximum(torso, neck * 0.7), shoulders)
    return (dens * body.soft_tissue).astype(np.float32)


_RIB = chaikin(np.array([(0.1, 0.0), (0.45, -0.12), (0.85, 0.02), (1.04, 0.3)]), 3)
_ANTERIOR_RIB = chaikin(np.array([(0.98, 0.0), (0.7, 0.15), (0.35, 0.32)]), 3)
_CLAVICLE = chaikin(np.array([(0.06, -1.13), (0.45, -1.25), (0.8, -1.2), (1.15, -1.38)]), 3)


def _rib_paths(body: Body, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Posterior ribs (10 per side) as body-frame polylines, tagged with their side."""
    spacing = 0.2 * body.inspiration * rng.uniform(0.95, 1.05)
    offsets = -1.1 + np.arange(10) * spacing + rng.normal(0, 0.01, 10)
    return [(side, (_RIB + (0.0, y)) * (sg, 1.0)) for side, sg in SIDE_SIGN.items() for y in offsets]


def _polylines(canvas: Canvas, paths: list[np.ndarray], thickness_units: float, target: np.ndarray) -> None:
    import cv2

    stacked = canvas.to_px(np.concatenate(paths))
    fixed = np.round(stacked * 16).astype(np.int32)
    px = np.split(fixed, np.cumsum([len(p) for p in paths])[:-1])
    thick = max(1, int(round(thickness_units * canvas.unit_px)))
    cv2.polylines(target, px, False, 255, thickness=thick, lineType=cv2.LINE_8, shift=4)


def _spine(canvas: Canvas) -> list[np.ndarray]:
    """Vertebral bodies as body-frame rectangles down the midline."""
    tops = np.arange(-2.0, 2.0, 0.19)
    return [np.array([(-0.11, t), (0.11, t), (0.11, t + 0.15), (-0.11, t + 0.15)]) for t in tops]


def _bones(canvas: Canvas) -> np.ndarray:
    """Ribs (brighter cortex), anterior ribs, clavicles and spine as a float32 density layer."""
    import cv2

    posterior = [pts for _, pts in canvas.ribs]
    outer, inner, anterior, spine = (np.zeros((canvas.size, canvas.size), np.uint8) for _ in range(4))
    _polylines(canvas, posterior + [_CLAVICLE * (sg, 1.0) for sg in (-1.0, 1.0)], 0.075, outer)
    _polylines(canvas, posterior, 0.035, inner)
    fronts = [(_ANTERIOR_RIB + (0.0, -0.95 + k * 0.28)) * (sg, 1.0) for sg in (-1.0, 1.0) for k in range(5)]
    _polylines(canvas, fronts, 0.06, anterior)
    blocks = np.round(canvas.to_px(np.concatenate(_spine(canvas))) * 16).astype(np.int32).reshape(-1, 4, 2)
    cv2.fillPoly(spine, list(blocks), 255, lineType=cv2.LINE_8, shift=4)
    # weights ×20 in int16: cortex 1, medulla 0.65, anterior ribs 0.3, vertebrae 0.4
    mix = 20 * outer.astype(np.int16) - 7 * inner + 6 * anterior.astype(np.int16) + 8 * spine.astype(np.int16)
    mix = cv2.GaussianBlur(mix.astype(np.float32), (0, 0), 0.7 * canvas.size / 256)
    return mix * np.float32(canvas.body.rib_amp / (255.0 * 20.0))


def _vessels(body: Body, bx: np.ndarray, by: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lung markings: streaks radiating from the hila, fading to the periphery (float32, unmasked)."""
    import cv2

    out = np.zeros_like(bx)
    for side, sg in SIDE_SIGN.items():
        dx, dy = bx - sg * 0.22, by + 0.15
        r = np.sqrt(dx * dx + dy * dy)
        theta = np.arctan2(dy, dx)
        table = np.clip(rng.standard_normal((6, 160)).astype(np.float32), 0, None) ** 2
        map_x = ((theta + np.pi) * (160.0 / (2 * np.pi))).astype(np.float32)
        map_y = np.minimum(r * 4.0, 5.0).astype(np.float32)
        streaks = cv2.remap(table, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        out += np.where(bx * sg > 0.0, streaks * np.exp(-r / 0.75), 0.0).astype(np.float32)
    return out * body.vessel_amp * 0.5


def _coarse(body: Body, size: int):
    """Body coordinates on a half-resolution grid (images ≥ 160 px) and the upsampler back to
    ``size``: smooth layers (soft tissue, hila, markings) do not need every pixel."""
    import cv2

    if size < 160:
        _, _, bx, by = _frame(body, size)
        return bx, by, lambda layer: layer.astype(np.float32)
    _, _, bx, by = _frame(body, size // 2)
    return bx, by, lambda layer: cv2.resize(layer.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def build_canvas(body: Body, size: int, rng: np.random.Generator) -> Canvas:
    """Draw the anatomy of a frontal radiograph; findings are added afterwards (``findings.py``)."""
    matrix, offset, bx, by = _frame(body, size)
    zeros = np.zeros((size, size), np.float32)
    empty = np.zeros((size, size), bool)
    canvas = Canvas(
        size=size, body=body, matrix=matrix, offset=offset, bx=bx, by=by, base=zeros, air=zeros.copy(),
        vessels=zeros.copy(), vessel_keep=np.ones_like(zeros), bones=zeros.copy(), lung={}, lung_full={},
        heart=empty, mediastinum=empty.copy(), body_mask=empty.copy(), domes={},
    )
    edge = 0.9 * size / 256
    lung_u8 = {}
    for side in SIDE_SIGN:
        pts, y_cp, y_dome = lung_outline(body, side)
        lung_u8[side] = fill_polygon(canvas, pts)
        canvas.domes[side] = (y_cp, y_dome)
    heart_soft, canvas.heart = _heart(body, bx, by, min(d for _, d in canvas.domes.values()))
    medi_u8 = _mediastinum(canvas)
    canvas.mediastinum = medi_u8.astype(bool)
    medi_soft = soft(medi_u8, edge)
    lungs_soft = soft(lung_u8["right"] | lung_u8["left"], edge) * (1 - heart_soft) * (1 - medi_soft)
    cx, cy, up = _coarse(body, size)
    depth = 0.75 + 0.25 * np.sqrt(np.clip(1.0 - ((np.abs(cx) - 0.52) / 0.5) ** 2, 0, 1))
    depth *= 1.0 - 0.3 * np.clip((cy - 0.15) / 0.6, 0, 1)  # domes overlap the bases posteriorly
    canvas.air = (lungs_soft * up(depth) * body.lung_air).astype(np.float32)
    has_air = canvas.air > 0.05 * body.lung_air  # visible lung: where there is air to fill or darken
    for side in SIDE_SIGN:
        canvas.lung_full[side] = lung_u8[side].astype(bool)
        canvas.lung[side] = canvas.lung_full[side] & has_air
    hila = sum(np.exp(-(((cx - sg * 0.24) / 0.09) ** 2 + ((cy + 0.12) / 0.16) ** 2)) for sg in (-1.0, 1.0))
    torso = up(_torso(body, cx, cy) + 0.05 * hila + _stomach_and_breasts(canvas, cx, cy, rng))
    canvas.body_mask = torso > 0.05 * body.soft_tissue
    canvas.ribs = _rib_paths(body, rng)
    canvas.bones = _bones(canvas)
    trachea = np.clip((0.045 - np.abs(bx - 0.01)) * 40, 0, 1) * (by < -0.5) * (by > -1.6)
    canvas.base = (torso + 0.02 * heart_soft + 0.02 * medi_soft + canvas.bones * canvas.body_mask
                   - 0.08 * trachea).astype(np.float32)
    visible = canvas.lung["right"] | canvas.lung["left"]
    markings = up(_vessels(body, cx, cy, rng)) + smooth_noise(rng, size, 20) * 0.012
    canvas.vessels = (markings * soft(visible, edge)).astype(np.float32)
    return canvas


def _stomach_and_breasts(canvas: Canvas, bx: np.ndarray, by: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gastric air bubble under the left dome; breast shadows in women (unlabelled anatomy)."""
    _, dome_l = canvas.domes["left"]
    gx, gy = 0.5 + rng.normal(0, 0.05), dome_l + rng.uniform(0.12, 0.2)
    q = ((bx - gx) / rng.uniform(0.12, 0.22)) ** 2 + ((by - gy) / rng.uniform(0.07, 0.12)) ** 2
    out = -np.clip((1 - q) * 3, 0, 1) * rng.uniform(0.05, 0.15) * (by > dome_l + 0.02)
    if canvas.body.female:
        for sg in (-1.0, 1.0):
            q = ((bx - sg * 0.6) / 0.5) ** 2 + ((by - 0.72) / 0.32) ** 2
            out += np.clip((1 - q) * 2, 0, 1) * rng.uniform(0.03, 0.07)
    return out


def density(canvas: Canvas) -> np.ndarray:
    """Total density with findings already folded into ``base``/``air``/``vessel_keep``."""
    return canvas.base - canvas.air + canvas.vessels * canvas.vessel_keep


# ------------------------------------------------------------------------------------------------
# lateral view (no findings drawn: a different-looking image carrying the study's labels)
# ------------------------------------------------------------------------------------------------
def lateral_density(body: Body, size: int, rng: np.random.Generator) -> np.ndarray:
    """Density of a simple lateral view: wide body, one lung field, spine posterior, heart anterior."""
    _, _, bx, by = _frame(replace(body, half_width=body.half_width * 0.95, angle=body.angle * 0.5), size)
    q = (bx / 1.25) ** 2 + ((by - 0.3) / 1.7) ** 2
    dens = np.clip((1 - q) * 5, 0, 1) * body.soft_tissue
    ql = ((bx - 0.05) / 0.8) ** 2 + ((by + 0.05) / 1.0) ** 2
    dens -= np.clip((1 - ql) * 4, 0, 1) * body.lung_air * np.clip((0.55 + 0.2 * bx - by) * 8, 0, 1)
    qh = ((bx + 0.35) / (0.4 + body.ctr * 0.3)) ** 2 + ((by - 0.45) / 0.38) ** 2
    dens += np.clip((1 - qh) * 2, 0, 1) * body.lung_air * 0.5
    spine = (np.abs(bx - 0.85) < 0.14) * (np.mod(by + 2.0, 0.19) < 0.15)
    dens += spine * body.rib_amp * 1.2 + (np.abs(bx + 0.95) < 0.03) * (by < 0.4) * body.rib_amp
    dens += smooth_noise(rng, size, 24) * 0.01
    return dens.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# exposure and confounders
# ------------------------------------------------------------------------------------------------
def expose(dens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Density → uint8 image with contrast/brightness/gamma jitter, heel effect, blur and noise."""
    import cv2

    size = dens.shape[0]
    img = dens / DENSITY_WHITE
    sigma = rng.uniform(0.4, 1.1) * size / 256
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigma)
    contrast, bright, gamma = rng.uniform(0.85, 1.2), rng.uniform(-0.08, 0.08), rng.uniform(0.8, 1.25)
    img = cv2.pow(np.clip(contrast * (img - 0.5) + (0.5 + bright), 0, 1), gamma)
    gx, gy = _pixel_grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    heel = (math.cos(angle) * gx + math.sin(angle) * gy) / size - 0.5 * (math.cos(angle) + math.sin(angle))
    img *= 1.0 + rng.uniform(0.0, 0.18) * heel
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.008, 0.03))
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def add_marks(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Burn in a side marker and text-like annotations at random places (independent of labels)."""
    import cv2

    size = image.shape[0]
    layer = np.zeros_like(image)
    scale = size / 256
    corner = rng.integers(4)
    x = int((0.06 if corner % 2 == 0 else 0.82) * size + rng.normal(0, 4) * scale)
    y = int((0.14 if corner < 2 else 0.92) * size + rng.normal(0, 4) * scale)
    cv2.putText(layer, "LR"[rng.integers(2)], (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.9 * scale * rng.uniform(0.6, 1.3),
                int(rng.integers(170, 256)), max(1, int(2 * scale)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):
        chars = "ABCDEFGHKLMPRSTUVX0123456789 :-"
        text = "".join(chars[i] for i in rng.integers(0, len(chars), int(rng.integers(3, 10))))
        org = (int(rng.uniform(0.02, 0.6) * size), int(rng.choice([rng.uniform(0.04, 0.1), rng.uniform(0.9, 0.98)]) * size))
        cv2.putText(layer, text, org, cv2.FONT_HERSHEY_PLAIN, 0.8 * scale * rng.uniform(0.7, 1.2),
                    int(rng.integers(120, 256)), max(1, int(round(scale))), cv2.LINE_AA)
    if rng.random() < 0.15:  # collimator edge: a bright band along one border
        band = int(rng.uniform(0.02, 0.08) * size)
        edge = [np.s_[:band, :], np.s_[-band:, :], np.s_[:, :band], np.s_[:, -band:]][rng.integers(4)]
        layer[edge] = np.maximum(layer[edge], int(rng.integers(90, 200)))
    return np.maximum(image, layer)
