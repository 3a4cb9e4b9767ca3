"""SynthCXR findings: one drawer per finding, each drawing through an exact mask.

A drawer changes the canvas only inside the mask it returns (it removes lung air, adds density,
or removes lung markings there), so the mask *is* the drawn extent; boxes (RSNA) are the bounding
boxes of the mask's connected components and Object-CXR shapes are the shapes rasterised.

Severity is continuous in [0, 1]; every size and strength below is a linear function of it. The
constants were tuned on this machine so that a raw-pixel linear probe lands around 0.6–0.8 AUC and
a 16-bin histogram probe stays near chance (/work/shared/SYNTHCXR.md; measured numbers in
docs/synthcxr.md). "air" factors are the share of the lung's air removed at the lesion's core.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from g2d_bench.datasets.synthcxr.world import SIDE_SIGN, ZONE_SPLIT_Y, Canvas, chaikin, smooth_noise

#: Every finding the world can draw (internal names; label spaces map them in ``labels.py``).
FINDINGS = (
    "atelectasis", "cardiomegaly", "consolidation", "covid", "edema", "effusion", "emphysema",
    "enlarged_cardiomediastinum", "fibrosis", "foreign_object", "fracture", "hernia", "infiltration",
    "mass", "nodule", "pleural_thickening", "pneumothorax", "support_devices",
)
#: Findings that are size attributes of normal anatomy: their masks are the heart / mediastinum,
#: not lesions, so they stay out of the union lesion mask.
ANATOMICAL = ("cardiomegaly", "enlarged_cardiomediastinum")
#: Cardiothoracic ratio above which the heart is called enlarged (radiology's 0.5 rule); normal
#: hearts spread up to it, so cases near it are ambiguous (SYNTHCXR.md: threshold inside the range).
CTR_THRESHOLD = 0.5
#: Upper-mediastinal half-width (body units) above which the mediastinum is called widened.
MEDIASTINUM_THRESHOLD = 0.21
#: Smallest nodule radius: 4 px at 96 px (SYNTHCXR.md: radius ≥ 3–4 px, smaller ones vanish in a
#: 3×3 final feature map).
NODULE_MIN_RADIUS = 4.0 / 96


@dataclass
class Finding:
    """One finding instance of an image.

    ``side``: "right" / "left" (the patient's) / "bilateral" / "none"; ``zone``: "upper" / "lower" /
    "diffuse". ``boxes`` (x, y, w, h in pixels) and ``shapes`` (Object-CXR ``(type, coords)``) are
    filled while drawing.
    """

    name: str
    side: str = "none"
    zone: str = "diffuse"
    severity: float = 0.5
    boxes: list = field(default_factory=list)
    shapes: list = field(default_factory=list)

    def sides(self) -> tuple[str, ...]:
        """The lung sides the finding is drawn on."""
        return ("right", "left") if self.side in ("bilateral", "none") else (self.side,)


Drawer = Callable[[Canvas, Finding, np.random.Generator], np.ndarray]
DRAWERS: dict[str, Drawer] = {}


def drawer(name: str) -> Callable[[Drawer], Drawer]:
    """Register the drawer of finding ``name``."""

    def wrap(fn: Drawer) -> Drawer:
        DRAWERS[name] = fn
        return fn

    return wrap


def draw_findings(canvas: Canvas, findings: list[Finding], rng: np.random.Generator) -> list[np.ndarray]:
    """Draw every finding onto ``canvas``; returns one bool ``S×S`` mask per finding, in order."""
    return [DRAWERS[f.name](canvas, f, rng) for f in findings]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _erode(mask: np.ndarray, radius_px: float) -> np.ndarray:
    import cv2

    r = int(round(radius_px))
    if r < 1:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.erode(mask.astype(np.uint8), kernel).astype(bool)


def _pick(mask: np.ndarray, rng: np.random.Generator, margin_px: float = 0.0) -> tuple[float, float] | None:
    """A random pixel (x, y) inside ``mask`` at least ``margin_px`` from its border, if any (else
    as far inside as there is room for)."""
    import cv2

    if not mask.any():
        return None
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    for m in (inside > margin_px, inside > margin_px / 2, mask):
        idx = np.flatnonzero(m)
        if idx.size:
            i = int(idx[rng.integers(idx.size)])
            return float(i % mask.shape[1]), float(i // mask.shape[1])
    return None


def _remove_air(canvas: Canvas, strength: np.ndarray, mask: np.ndarray, veil: float = 1.0) -> None:
    """Fill a share ``strength`` (0..1) of the lung air inside ``mask``; markings fade by ``veil``."""
    s = np.where(mask, np.clip(strength, 0.0, 1.0), 0.0).astype(np.float32)
    canvas.air *= 1.0 - s
    canvas.vessel_keep *= 1.0 - veil * s


def _add_density(canvas: Canvas, amount: np.ndarray | float, mask: np.ndarray) -> None:
    canvas.base += np.where(mask, amount, 0.0).astype(np.float32)


def _blob(canvas: Canvas, rng: np.random.Generator, centre: tuple[float, float], radius_px: float,
          cells: int, roughness: float) -> np.ndarray:
    """A patchy field in [0, ~1.5]: an anisotropic Gaussian modulated by smooth noise (``cells``
    noise cells across the image). Computed in a box of ±2.5 radii (the field is < 0.1 outside)."""
    import cv2

    out = np.zeros((canvas.size, canvas.size), np.float32)
    half = 2.5 * radius_px
    x0, x1 = max(0, int(centre[0] - half)), min(canvas.size, int(centre[0] + half) + 1)
    y0, y1 = max(0, int(centre[1] - half)), min(canvas.size, int(centre[1] + half) + 1)
    a, ratio = rng.uniform(0, np.pi), rng.uniform(0.45, 1.0)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - centre[0]
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - centre[1]
    u = (dx * math.cos(a) + dy * math.sin(a)) / radius_px
    v = (-dx * math.sin(a) + dy * math.cos(a)) / (radius_px * ratio)
    n = max(2, round(cells * max(x1 - x0, y1 - y0) / canvas.size))
    grid = rng.standard_normal((n + 1, n + 1)).astype(np.float32)
    noise = cv2.resize(grid, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
    noise /= max(float(noise.std()), 1e-6)
    # the noise floor keeps the core above the 0.5 threshold: every blob shows at its centre
    out[y0:y1, x0:x1] = np.exp(-(u * u + v * v)) * np.maximum(1.0 + roughness * noise, 0.6)
    return out


def _components(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Drop components smaller than ``min_area``; return the mask and (x, y, w, h) boxes."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    boxes = []
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area >= min_area:
            keep[k] = True
            boxes.append((x, y, w, h))
    return keep[labels], boxes


def _largest_component(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n < 2:
        return mask & False, []
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[k, :4])
    return labels == k, [(x, y, w, h)]


def _patches(canvas: Canvas, f: Finding, rng: np.random.Generator, *, centres: list, radius_units: float,
             strength: float, cells: int, roughness: float, veil: float, lobar: bool = False) -> np.ndarray:
    """Shared opacity drawer (consolidation, infiltration, COVID-like): thresholded patchy blobs;
    ``lobar`` clips them to their zone, giving the sharp fissure border of lobar pneumonia."""
    allowed = canvas.region(f.side, f.zone if lobar else None)
    field_ = np.zeros((canvas.size, canvas.size), np.float32)
    for c in centres:
        r = radius_units * canvas.unit_px * rng.uniform(0.8, 1.2)
        field_ = np.maximum(field_, _blob(canvas, rng, c, r, cells, roughness))
    threshold = 0.5
    min_area = max(4, int(0.0015 * canvas.size ** 2))  # no speck-sized fragments (and RSNA boxes)
    mask, boxes = _components((field_ > threshold) & allowed, min_area)
    if not boxes:  # only specks inside the lung: keep the largest rather than nothing
        mask, boxes = _largest_component((field_ > threshold) & allowed)
    core = np.clip((field_ - threshold) / 0.3, 0, 1)  # a plateau with soft margins, not a dome
    texture = np.clip(0.8 + 0.2 * smooth_noise(rng, canvas.size, 24), 0.4, 1.0)  # patchy, air bronchograms
    _remove_air(canvas, strength * core * texture, mask, veil)
    f.boxes = boxes
    return mask


def _centres(canvas: Canvas, f: Finding, rng: np.random.Generator, count: int, margin_units: float,
             peripheral: bool = False) -> list[tuple[float, float]]:
    out = []
    for side in f.sides():
        region = canvas.region(side, f.zone)
        if peripheral:  # the lateral half of the lung, mid and lower zones
            region = canvas.region(side) & (SIDE_SIGN[side] * canvas.bx > 0.5 * canvas.body.lung_width) \
                & (canvas.by > ZONE_SPLIT_Y - 0.35)
        for _ in range(count):
            p = _pick(region, rng, margin_units * canvas.unit_px)
            if p is not None:
                out.append(p)
    return out


# ------------------------------------------------------------------------------------------------
# airspace opacities
# ------------------------------------------------------------------------------------------------
@drawer("consolidation")
def draw_consolidation(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Patchy segmental opacity, or (half the time) a lobar one filling much of its zone up to the
    fissure; one blob per side (two when severe)."""
    count = 1 + int(f.severity > 0.6 and rng.random() < 0.5)
    lobar = bool(rng.random() < 0.5)
    centres = _centres(canvas, f, rng, count, 0.1)
    radius = (0.26 + 0.3 * f.severity) * (1.2 if lobar else 1.0)
    return _patches(canvas, f, rng, centres=centres, radius_units=radius, strength=0.45 + 0.45 * f.severity,
                    cells=8, roughness=0.8, veil=0.8, lobar=lobar)


@drawer("infiltration")
def draw_infiltration(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Fainter, larger, more ragged patches than consolidation (a look-alike of it)."""
    centres = _centres(canvas, f, rng, int(rng.integers(1, 3)), 0.1)
    return _patches(canvas, f, rng, centres=centres, radius_units=0.14 + 0.18 * f.severity,
                    strength=0.12 + 0.25 * f.severity, cells=14, roughness=0.7, veil=0.5)


@drawer("covid")
def draw_covid(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Bilateral peripheral ground-glass patches, lower-zone predominant."""
    centres = _centres(canvas, f, rng, int(rng.integers(2, 4)), 0.0, peripheral=True)
    return _patches(canvas, f, rng, centres=centres, radius_units=0.2 + 0.2 * f.severity,
                    strength=0.22 + 0.3 * f.severity, cells=12, roughness=0.6, veil=0.4)


@drawer("atelectasis")
def draw_atelectasis(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Plate-like (discoid) band, or a dense basal wedge when severe (lobar collapse)."""
    import cv2

    mask_u8 = np.zeros((canvas.size, canvas.size), np.uint8)
    for side in f.sides():
        region = canvas.region(side, f.zone)
        p = _pick(region, rng, 0.08 * canvas.unit_px)
        if p is None:
            continue
        if f.severity < 0.55:
            length = (0.22 + 0.3 * f.severity) * canvas.unit_px
            thick = max(1.0, (0.045 + 0.05 * f.severity) * canvas.unit_px)
            angle = rng.normal(0, 12) + math.degrees(math.atan2(canvas.matrix[1, 0], canvas.matrix[0, 0]))
            cv2.ellipse(mask_u8, (int(p[0]), int(p[1])), (int(length), int(thick)), angle, 0, 360, 1, -1)
        else:
            y_cp, y_dome = canvas.domes[side]
            sg = SIDE_SIGN[side]
            tri = np.array([(sg * 0.14, -0.05), (sg * 0.14, y_dome + 0.12), (sg * (0.5 + 0.3 * f.severity), y_dome)])
            cv2.fillPoly(mask_u8, [np.round(canvas.to_px(tri)).astype(np.int32)], 1)
    mask = mask_u8.astype(bool) & canvas.region(f.side)
    _remove_air(canvas, np.full(mask.shape, 0.55 + 0.4 * f.severity, np.float32), mask, 0.9)
    return mask


# ------------------------------------------------------------------------------------------------
# pleura
# ------------------------------------------------------------------------------------------------
@drawer("effusion")
def draw_effusion(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Fluid filling the base from the costophrenic angle up, with a lateral meniscus."""
    mask = np.zeros((canvas.size, canvas.size), bool)
    strength = np.zeros(mask.shape, np.float32)
    height = 0.04 + 0.85 * f.severity ** 1.5
    for side in f.sides():
        sg = SIDE_SIGN[side]
        y_cp, _ = canvas.domes[side]
        lateral = np.clip((sg * canvas.bx - 0.1) / (0.85 * canvas.body.lung_width), 0, 1)
        level = y_cp - height * rng.uniform(0.85, 1.15) - 0.18 * lateral ** 2
        below = canvas.by - level
        m = canvas.lung[side] & (below > 0)
        mask |= m
        strength = np.where(m, (0.55 + 0.45 * f.severity) * np.clip(below / 0.1, 0, 1) ** 0.7, strength)
    _remove_air(canvas, strength, mask, 1.0)
    return mask


@drawer("pneumothorax")
def draw_pneumothorax(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Lucent rim without lung markings along the apex/lateral wall, bounded by a pleural line."""
    import cv2

    mask = np.zeros((canvas.size, canvas.size), bool)
    for side in f.sides():
        sg = SIDE_SIGN[side]
        lung = canvas.lung_full[side]
        closed = lung | ((sg * canvas.bx < 0.35) & (canvas.by > -0.9)) | (canvas.by > canvas.domes[side][1] - 0.1)
        dist = cv2.distanceTransform(closed.astype(np.uint8), cv2.DIST_L2, 5) / canvas.unit_px
        depth = (0.12 + 0.35 * f.severity) * rng.uniform(0.85, 1.15)
        if f.zone == "lower":  # lateral / deep-sulcus collection, tapering upwards
            extent = np.clip((canvas.by - (0.55 - 1.3 * f.severity)) / 0.45, 0, 1)
        else:  # apical cap, tapering downwards
            extent = np.clip(((-0.75 + 1.5 * f.severity) - canvas.by) / 0.45, 0, 1)
        mask |= lung & (dist < depth * np.sqrt(extent)) & (extent > 0)
    rest = np.zeros_like(mask)
    for side in f.sides():
        rest |= canvas.lung_full[side]
    rest &= ~mask
    line = mask & cv2.dilate(rest.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    canvas.vessel_keep[mask] = 0.0
    canvas.air[mask] *= 1.0 + 0.25 + 0.3 * f.severity
    _add_density(canvas, 0.05 * canvas.body.lung_air / 0.3, line)
    return mask


@drawer("pleural_thickening")
def draw_pleural_thickening(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """A band along the lateral chest wall (lower zone) or an apical cap (upper zone)."""
    import cv2

    mask = np.zeros((canvas.size, canvas.size), bool)
    width = (0.03 + 0.05 * f.severity) * canvas.unit_px
    for side in f.sides():
        lung = canvas.lung_full[side]
        sg = SIDE_SIGN[side]
        dist = cv2.distanceTransform((lung | (sg * canvas.bx < 0.4)).astype(np.uint8), cv2.DIST_L2, 5)
        band = lung & (dist < width * rng.uniform(0.8, 1.2))
        if f.zone == "upper":
            band &= canvas.by < -0.7
        else:
            band &= (canvas.by > -0.5) & (canvas.by < canvas.domes[side][0] - 0.1)
        mask |= band
    _remove_air(canvas, np.full(mask.shape, 0.6 + 0.3 * f.severity, np.float32), mask, 1.0)
    return mask


# ------------------------------------------------------------------------------------------------
# heart, mediastinum, interstitium
# ------------------------------------------------------------------------------------------------
@drawer("cardiomegaly")
def draw_cardiomegaly(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Nothing extra to draw: the heart was drawn at the population's CTR. Mask = heart silhouette."""
    return canvas.heart.copy()


@drawer("enlarged_cardiomediastinum")
def draw_enlarged_cardiomediastinum(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Nothing extra to draw: the mediastinum was drawn wide. Mask = mediastinal silhouette."""
    return canvas.mediastinum & canvas.body_mask


@drawer("edema")
def draw_edema(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Bilateral perihilar haze (bat wing) plus Kerley B lines at the lateral bases when worse."""
    import cv2

    lungs = canvas.region("bilateral")
    sigma = 0.35 + 0.3 * f.severity
    haze = np.zeros((canvas.size, canvas.size), np.float32)
    for sg in SIDE_SIGN.values():
        haze += np.exp(-(((canvas.bx - sg * 0.25) / sigma) ** 2 + ((canvas.by + 0.1) / (1.3 * sigma)) ** 2))
    core = np.clip((haze - 0.25) / 0.75, 0, 1)
    lines = np.zeros((canvas.size, canvas.size), np.uint8)
    if f.severity > 0.35:
        for side in SIDE_SIGN:
            sg = SIDE_SIGN[side]
            y_cp, _ = canvas.domes[side]
            for _ in range(int(3 + 8 * f.severity)):
                y = y_cp - rng.uniform(0.08, 0.45)
                x0 = sg * canvas.body.lung_width * rng.uniform(0.8, 0.9)
                seg = canvas.to_px(np.array([(x0, y), (x0 - sg * rng.uniform(0.06, 0.11), y)]))
                cv2.line(lines, tuple(int(v) for v in seg[0]), tuple(int(v) for v in seg[1]), 1, 1)
    line_mask = lines.astype(bool) & lungs
    mask = ((core > 0) & lungs) | line_mask
    _remove_air(canvas, (0.06 + 0.2 * f.severity) * core, mask & (core > 0), 0.5)
    _remove_air(canvas, np.full(mask.shape, 0.5, np.float32), line_mask, 0.0)
    return mask


def _round_lesion(canvas: Canvas, f: Finding, rng: np.random.Generator, radius_px: float, strength: float,
                  lobulation: float) -> np.ndarray:
    """A solid round lesion (sphere profile) fully inside the visible lung of its side and zone."""
    mask = np.zeros((canvas.size, canvas.size), bool)
    profile = np.zeros(mask.shape, np.float32)
    gx = np.arange(canvas.size, dtype=np.float32)
    for side in f.sides():
        p = _pick(canvas.region(side, f.zone), rng, radius_px * 1.1)
        if p is None:
            continue
        dx, dy = gx[None, :] - p[0], gx[:, None] - p[1]
        theta = np.arctan2(dy, dx)
        r = radius_px * (1.0 + lobulation * np.sin(3 * theta + rng.uniform(0, 6.3)))
        q = (dx * dx + dy * dy) / (r * r)
        m = (q < 1.0) & canvas.region(side)
        mask |= m
        profile = np.maximum(profile, np.sqrt(np.clip(1.0 - q, 0, 1)) * m)
    _remove_air(canvas, strength * profile, mask, 0.9)
    _add_density(canvas, 0.25 * strength * canvas.body.lung_air * profile, mask)
    return mask


@drawer("nodule")
def draw_nodule(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Round opacity, radius 4–7 px at 96 px (SYNTHCXR.md: ≥ 3–4 px)."""
    radius = (NODULE_MIN_RADIUS + 3.0 / 96 * f.severity) * canvas.size
    return _round_lesion(canvas, f, rng, radius, 0.75 + 0.25 * f.severity, 0.0)


@drawer("mass")
def draw_mass(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Larger lobulated opacity (> 3 cm), radius 6.5–12.5 px at 96 px."""
    radius = (6.5 + 6.0 * f.severity) / 96 * canvas.size
    return _round_lesion(canvas, f, rng, radius, 0.45 + 0.35 * f.severity, 0.12)


@drawer("emphysema")
def draw_emphysema(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Upper-zone hyperlucency with sparse markings, plus thin-walled bullae when severe."""
    region = canvas.region("bilateral") & (canvas.by < ZONE_SPLIT_Y + 0.25 * f.severity)
    canvas.air[region] *= 1.0 + 0.1 + 0.2 * f.severity
    canvas.vessel_keep[region] *= 1.0 - 0.6 * f.severity
    mask = region.copy()
    if f.severity > 0.5:
        gx = np.arange(canvas.size, dtype=np.float32)
        for _ in range(int(rng.integers(1, 4))):
            p = _pick(region, rng, 0.1 * canvas.unit_px)
            if p is None:
                break
            r = rng.uniform(0.06, 0.12) * canvas.unit_px
            d = np.sqrt((gx[None, :] - p[0]) ** 2 + (gx[:, None] - p[1]) ** 2) / r
            bulla = (d < 1.0) & canvas.region("bilateral")
            canvas.vessel_keep[bulla] = 0.0
            _add_density(canvas, 0.03, bulla & (d > 0.85))
            mask |= bulla
    return mask


@drawer("fibrosis")
def draw_fibrosis(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Reticular network (zero crossings of band-limited noise) in the peripheral lower lungs."""
    import cv2

    mask = np.zeros((canvas.size, canvas.size), bool)
    for side in f.sides():
        wall = ~_erode(canvas.lung_full[side], (0.25 + 0.25 * f.severity) * canvas.unit_px)
        mask |= canvas.region(side, "lower") & wall
    net = smooth_noise(rng, canvas.size, max(8, canvas.size // 10))
    reticule = np.exp(-(net / 0.25) ** 2)
    reticule = cv2.GaussianBlur(reticule, (0, 0), 0.5 * canvas.size / 256)
    _remove_air(canvas, (0.2 + 0.35 * f.severity) * reticule + 0.05, mask, 0.3)
    return mask


@drawer("hernia")
def draw_hernia(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Hiatal hernia: a retrocardiac round density with an air-fluid level."""
    _, dome = canvas.domes["left"]
    cx, cy = rng.normal(0.08, 0.04), dome - rng.uniform(0.08, 0.18)
    r = 0.1 + 0.1 * f.severity
    q = ((canvas.bx - cx) / r) ** 2 + ((canvas.by - cy) / (0.85 * r)) ** 2
    mask = (q < 1.0) & canvas.body_mask
    level = cy - 0.2 * r
    gas = mask & (canvas.by < level)
    _add_density(canvas, 0.05 + 0.05 * f.severity, mask & ~gas)
    _add_density(canvas, -(0.05 + 0.06 * f.severity), gas)
    return mask


@drawer("fracture")
def draw_fracture(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """A cortical break across a posterior rib (dark gap) with a small callus beside it."""
    import cv2

    ribs = [pts for side, pts in canvas.ribs if side in f.sides()]
    ribs = [pts for pts in ribs if (pts[:, 1].mean() < ZONE_SPLIT_Y) == (f.zone == "upper")] or ribs
    pts = ribs[int(rng.integers(len(ribs)))]
    k = int(rng.integers(len(pts) // 3, len(pts) - 2))
    centre = canvas.to_px(pts[k:k + 1])[0]
    tangent = canvas.to_px(pts[k + 1:k + 2])[0] - centre
    normal = np.array([-tangent[1], tangent[0]]) / (np.linalg.norm(tangent) + 1e-6)
    half = 0.06 * canvas.unit_px
    gap = np.zeros((canvas.size, canvas.size), np.uint8)
    a, b = centre - normal * half, centre + normal * half
    cv2.line(gap, (int(round(a[0])), int(round(a[1]))), (int(round(b[0])), int(round(b[1]))), 1,
             max(1, int(round(0.012 * canvas.unit_px * (1 + f.severity)))))
    callus = np.zeros_like(gap)
    cv2.circle(callus, (int(round(centre[0] + tangent[0])), int(round(centre[1] + tangent[1]))),
               max(1, int(round(0.03 * canvas.unit_px))), 1, -1)
    gap_mask = gap.astype(bool) & canvas.body_mask
    callus_mask = callus.astype(bool) & canvas.body_mask & ~gap_mask
    _add_density(canvas, -canvas.bones * 0.9, gap_mask)
    _add_density(canvas, 0.03 * f.severity + 0.01, callus_mask)
    return gap_mask | callus_mask


# ------------------------------------------------------------------------------------------------
# devices and foreign objects (bright: metal or radiopaque plastic)
# ------------------------------------------------------------------------------------------------
def _curve(canvas: Canvas, ctrl: list[tuple[float, float]], thickness_units: float, target: np.ndarray) -> None:
    import cv2

    px = np.round(canvas.to_px(chaikin(np.array(ctrl), 3)) * 16).astype(np.int32)
    thick = max(1, int(round(thickness_units * canvas.unit_px)))
    cv2.polylines(target, [px], False, 1, thickness=thick, lineType=cv2.LINE_8, shift=4)


def _device(canvas: Canvas, kind: str, rng: np.random.Generator, layer: np.ndarray) -> None:
    """Draw one support device into ``layer`` (uint8 0/1)."""
    import cv2

    j = lambda s=0.03: rng.normal(0, s)  # noqa: E731 - tiny jitter helper
    if kind == "ett":
        for dx in (-0.025, 0.025):
            _curve(canvas, [(0.01 + dx, -1.8), (0.01 + dx, -1.2), (0.01 + dx + j(0.01), -0.6 + j(0.08))], 0.012, layer)
    elif kind == "ng":
        _curve(canvas, [(0.0, -1.8), (-0.02, -0.5), (0.05, 0.4), (0.4 + j(), 0.9 + j())], 0.014, layer)
    elif kind == "cvc":
        sg = rng.choice([-1.0, 1.0])
        _curve(canvas, [(sg * 0.9, -1.45), (sg * 0.45, -1.15), (sg * 0.08, -0.85), (-0.06, -0.35 + j(0.1))], 0.016, layer)
    elif kind == "pacemaker":
        box = np.array([(0.5, -1.05), (0.75, -1.05), (0.75, -0.88), (0.5, -0.88)]) + (j(0.05), j(0.05))
        cv2.fillPoly(layer, [np.round(canvas.to_px(box)).astype(np.int32)], 1)
        _curve(canvas, [(0.55, -0.95), (0.3, -0.8), (0.0, -0.4), (-0.1, 0.1), (0.1, 0.45)], 0.014, layer)
    elif kind == "chest_tube":
        sg = rng.choice([-1.0, 1.0])
        _curve(canvas, [(sg * 1.1, 0.6), (sg * 0.8, 0.3), (sg * 0.6, -0.5 + j(0.1)), (sg * 0.45, -0.85)], 0.03, layer)
    else:  # ECG leads: small discs with wires running off
        for _ in range(int(rng.integers(2, 5))):
            c = canvas.to_px(np.array([(rng.uniform(-1, 1), rng.uniform(-1.2, 0.5))]))[0]
            cv2.circle(layer, (int(c[0]), int(c[1])), max(2, int(0.035 * canvas.unit_px)), 1, -1)
            end = c + rng.normal(0, 0.4 * canvas.unit_px, 2)
            cv2.line(layer, (int(c[0]), int(c[1])), (int(end[0]), int(end[1])), 1, 1)


DEVICES = ("ett", "ng", "cvc", "pacemaker", "chest_tube", "ecg")


@drawer("support_devices")
def draw_support_devices(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """Tubes, lines, pacemakers or ECG leads; ``f.shapes`` lists their kinds (chosen when planned)."""
    layer = np.zeros((canvas.size, canvas.size), np.uint8)
    if not f.shapes:
        f.shapes = [str(k) for k in rng.choice(DEVICES, size=int(rng.integers(1, 4)), replace=False)]
    for kind in f.shapes:
        _device(canvas, kind, rng, layer)
    mask = layer.astype(bool)
    _add_density(canvas, rng.uniform(0.18, 0.35), mask)
    return mask


def _object_shape(canvas: Canvas, rng: np.random.Generator, kind: int, layer: np.ndarray) -> tuple[int, tuple[int, ...]]:
    """Draw one Object-CXR object into ``layer``; returns its annotation ``(type, coords)``."""
    import cv2

    s = canvas.size
    c = canvas.to_px(np.array([(rng.uniform(-1.05, 1.05), rng.uniform(-1.1, 0.9))]))[0]
    cx, cy = int(np.clip(c[0], 0.08 * s, 0.92 * s)), int(np.clip(c[1], 0.08 * s, 0.92 * s))
    if kind == 0:  # rectangle: clips, snaps, coins seen edge-on
        w, h = (int(max(3, rng.uniform(0.015, 0.07) * s)) for _ in range(2))
        x1, y1 = cx - w // 2, cy - h // 2
        cv2.rectangle(layer, (x1, y1), (x1 + w, y1 + h), 1, -1)
        return 0, (x1, y1, x1 + w, y1 + h)
    if kind == 1:  # ellipse: buttons (round, with holes drawn darker later) and other round objects
        ax = int(max(2, rng.uniform(0.008, 0.035) * s))
        ay = int(max(2, ax * rng.uniform(0.6, 1.4)))
        cv2.ellipse(layer, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
        return 1, (cx - ax, cy - ay, cx + ax, cy + ay)
    # polygon: a wire (a thin band along a curve) or an irregular plate
    if rng.random() < 0.5:
        n = int(rng.integers(3, 6))
        steps = rng.normal(0, 0.05 * s, (n, 2)) + rng.normal(0, 0.05 * s, 2)  # a drift: wires run somewhere
        ctrl = np.array([(cx, cy)]) + np.cumsum(steps, axis=0)
        line = chaikin(np.clip(ctrl, 2, s - 3), 2)
        tangent = np.gradient(line, axis=0)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) / (np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-6)
        half = max(1.0, rng.uniform(0.003, 0.008) * s)
        poly = np.vstack([line + normal * half, (line - normal * half)[::-1]])
    else:
        k = int(rng.integers(5, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(0.02, 0.05) * s * rng.uniform(0.6, 1.0, k)
        poly = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
    poly = np.clip(np.round(poly), 0, s - 1).astype(np.int32)
    cv2.fillPoly(layer, [poly], 1)
    return 2, tuple(int(v) for v in poly.reshape(-1))


@drawer("foreign_object")
def draw_foreign_object(canvas: Canvas, f: Finding, rng: np.random.Generator) -> np.ndarray:
    """1–4 bright objects of the three Object-CXR types; ``f.shapes`` holds their annotations."""
    mask = np.zeros((canvas.size, canvas.size), bool)
    f.shapes = []
    for _ in range(int(rng.integers(1, 5))):
        layer = np.zeros((canvas.size, canvas.size), np.uint8)
        kind = int(rng.choice(3, p=[0.3, 0.4, 0.3]))
        f.shapes.append(_object_shape(canvas, rng, kind, layer))
        obj = layer.astype(bool)
        amp = rng.uniform(0.25, 0.6)
        profile = np.full(obj.shape, amp, np.float32)
        if kind == 1 and rng.random() < 0.6:  # a button: 2–4 darker holes inside it
            x1, y1, x2, y2 = f.shapes[-1][1]
            for _h in range(int(rng.integers(2, 5))):
                hx = int(rng.uniform(x1 + 0.3 * (x2 - x1), x2 - 0.3 * (x2 - x1)))
                hy = int(rng.uniform(y1 + 0.3 * (y2 - y1), y2 - 0.3 * (y2 - y1)))
                profile[max(hy - 1, 0):hy + 1, max(hx - 1, 0):hx + 1] *= 0.4
        _add_density(canvas, profile, obj)
        mask |= obj
    return mask
