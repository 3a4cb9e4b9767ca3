"""One SynthCXR image from plan to pixels, and the ground-truth sidecar ``_truth/``.

A :class:`Case` is planned first (patient, view, findings, report) with the dataset's planning
generator; :func:`render_case` then draws it with a generator seeded by ``(seed, case index)``, so
every image depends only on the dataset seed and its own index.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from g2d_bench.datasets.synthcxr import world
from g2d_bench.datasets.synthcxr.findings import ANATOMICAL, Finding, draw_findings
from g2d_bench.datasets.synthcxr.reports import Mention
from g2d_bench.datasets.synthcxr.world import Body, Canvas


@dataclass
class Case:
    """One planned image.

    ``key`` is the release's own image id, ``path`` the image file relative to the dataset root.
    ``mentions`` are what the (possibly unpublished) report says; ``labels`` is the row the release's
    label file will hold for it.
    """

    index: int
    key: str
    path: str
    patient: str
    view: str
    body: Body
    findings: list[Finding] = field(default_factory=list)
    split: str | None = None
    study: str | None = None
    female: bool = False
    age: int = 60
    mentions: list[Mention] = field(default_factory=list)
    report: str | None = None
    labels: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    #: labels read from the image by radiologists (CheXpert valid.csv), not mined from text
    curated: bool = False


# ------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------
def _lookalikes(canvas: Canvas, rng: np.random.Generator) -> None:
    """Unlabelled look-alikes: nipple shadows (nodule), skin folds (pneumothorax edge),
    calcified granulomas (tiny bright dots)."""
    bx, by = canvas.bx, canvas.by
    lungs = canvas.region("bilateral")
    if rng.random() < 0.12:
        y, r = rng.uniform(0.3, 0.6), rng.uniform(0.05, 0.08)
        for sg in (-1.0, 1.0):
            q = ((bx - sg * rng.uniform(0.5, 0.65)) ** 2 + (by - y) ** 2) / (r * r)
            canvas.base += (np.sqrt(np.clip(1 - q, 0, 1)) * rng.uniform(0.02, 0.05)).astype(np.float32)
    if rng.random() < 0.08:
        sg = rng.choice([-1.0, 1.0])
        x0 = sg * rng.uniform(0.6, 0.85)
        edge = bx * sg - (abs(x0) + 0.08 * np.sin(by * 2.0 + rng.uniform(0, 6)))
        fold = (edge > 0) & (edge < rng.uniform(0.05, 0.12)) & lungs
        canvas.base += (fold * rng.uniform(0.01, 0.03)).astype(np.float32)
    if rng.random() < 0.08:
        idx = np.flatnonzero(lungs)
        if idx.size:
            i = int(idx[rng.integers(idx.size)])
            y, x = divmod(i, canvas.size)
            d2 = (np.arange(canvas.size)[None, :] - x) ** 2 + (np.arange(canvas.size)[:, None] - y) ** 2
            r = max(1.0, 0.008 * canvas.size)
            canvas.base += ((d2 <= r * r) * rng.uniform(0.1, 0.2)).astype(np.float32)


def render_case(case: Case, size: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw one case: (uint8 ``size×size`` image, one bool mask per ``case.findings`` entry).

    Lateral views carry the study's findings as labels only; their masks are empty.
    """
    rng = np.random.default_rng([seed, case.index])
    if case.view == "LATERAL":
        image = world.expose(world.lateral_density(case.body, size, rng), rng)
        empty = np.zeros((size, size), bool)
        return world.add_marks(image, rng), [empty.copy() for _ in case.findings]
    canvas = world.build_canvas(case.body, size, rng)
    masks = draw_findings(canvas, case.findings, rng)
    _lookalikes(canvas, rng)
    image = world.expose(world.density(canvas), rng)
    return world.add_marks(image, rng), masks


def union_mask(case: Case, masks: list[np.ndarray], size: int) -> np.ndarray:
    """Union of the lesion masks (heart / mediastinum size findings excluded)."""
    out = np.zeros((size, size), bool)
    for f, m in zip(case.findings, masks):
        if f.name not in ANATOMICAL:
            out |= m
    return out


# ------------------------------------------------------------------------------------------------
# truth sidecar
# ------------------------------------------------------------------------------------------------
FINDING_COLUMNS = ("key", "finding", "side", "zone", "severity", "drawn", "label", "hedged", "mismatched",
                   "area", "mask")
IMAGE_COLUMNS = ("key", "image", "patient", "view", "split", "findings", "mask")


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{float(value):.1f}"


class TruthWriter:
    """Rows of ``_truth/images.csv`` and ``_truth/findings.csv``, and the ``_truth/masks/*.png``.

    :meth:`rows` writes one case's masks and returns its rows (workers call it); :meth:`extend`
    collects them in case order and :meth:`close` writes the two CSVs.
    """

    def __init__(self, root: Path, text_labels: bool, label_space: dict[str, tuple[str, ...]]) -> None:
        self.root = root / "_truth"
        (self.root / "masks").mkdir(parents=True, exist_ok=True)
        self.text_labels = text_labels
        self.label_space = label_space
        self.images: list[list[str]] = []
        self.findings: list[list[str]] = []

    def _png(self, name: str, mask: np.ndarray) -> str:
        import cv2

        cv2.imwrite(str(self.root / "masks" / name), mask.astype(np.uint8) * 255, [cv2.IMWRITE_PNG_BILEVEL, 1])
        return f"masks/{name}"

    def rows(self, case: Case, masks: list[np.ndarray], size: int) -> tuple[list[str], list[list[str]]]:
        """Write one case's union and per-finding masks; its images.csv row and findings.csv rows.

        Lateral views draw nothing: they get an empty union mask and no finding rows (their study's
        findings are listed under the frontal image)."""
        union = self._png(f"{case.index:06d}.png", union_mask(case, masks, size))
        frontal = case.view != "LATERAL"
        names = "|".join(sorted({f.name for f in case.findings})) if frontal else ""
        image_row = [case.key, case.path, case.patient, case.view, case.split or "", names, union]
        if not frontal:
            return image_row, []
        written = {m.index: m for m in case.mentions if m.index is not None}
        rows = []
        for i, (f, m) in enumerate(zip(case.findings, masks)):
            path = self._png(f"{case.index:06d}_{i}_{f.name}.png", m) if m.any() else ""
            label, hedged, mismatched = self._label(f, written.get(i), case.curated)
            rows.append([case.key, f.name, f.side, f.zone, f"{f.severity:.3f}", "1", label, hedged, mismatched,
                         str(int(m.sum())), path])
        for m in case.mentions:
            if not m.drawn and m.status != 0.0:
                rows.append([case.key, m.finding, m.side, m.zone, f"{m.severity:.3f}", "0", _fmt(m.status),
                             str(int(m.status == -1.0)), str(int(m.status == 1.0)), "0", ""])
        return image_row, rows

    def _label(self, f: Finding, mention: Mention | None, curated: bool) -> tuple[str, str, str]:
        """(label, hedged, mismatched) of a drawn finding as the release's labels state it."""
        if not self.text_labels or curated:
            return ("1.0" if f.name in self.label_space else ""), "0", "0"
        status = mention.status if mention is not None else math.nan
        hedged = str(int(status == -1.0))
        mismatched = str(int(not (status in (1.0, -1.0))))
        return _fmt(status), hedged, mismatched

    def extend(self, image_row: list[str], finding_rows: list[list[str]]) -> None:
        self.images.append(image_row)
        self.findings.extend(finding_rows)

    def close(self) -> None:
        for name, columns, rows in (("images.csv", IMAGE_COLUMNS, self.images),
                                    ("findings.csv", FINDING_COLUMNS, self.findings)):
            with open(self.root / name, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(columns)
                writer.writerows(rows)


@dataclass
class CaseResult:
    """What drawing one case decided that the label files need (returned from worker processes)."""

    drawn: list[tuple[list, list]]
    meta: dict
    image_row: list[str]
    finding_rows: list[list[str]]

    def apply(self, case: Case) -> None:
        """Copy boxes/shapes/meta onto the planned case (laterals drew nothing, so they keep the plan)."""
        if case.view != "LATERAL":
            for f, (boxes, shapes) in zip(case.findings, self.drawn):
                f.boxes, f.shapes = boxes, shapes
        case.meta.update(self.meta)


@dataclass
class Job:
    """Draw, encode and record one case: picklable, so worker processes can run it."""

    root: Path
    size: int
    seed: int
    writer: object
    truth: TruthWriter

    def __call__(self, case: Case) -> CaseResult:
        image, masks = render_case(case, self.size, self.seed)
        self.writer.write_image(self.root, case, image)
        self.writer.record(case, masks)
        image_row, finding_rows = self.truth.rows(case, masks, self.size)
        return CaseResult([(list(f.boxes), list(f.shapes)) for f in case.findings], dict(case.meta),
                          image_row, finding_rows)
