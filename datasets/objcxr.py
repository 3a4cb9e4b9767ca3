"""Object-CXR (foreign objects): ``train.csv`` / ``dev.csv`` with ``image_name,annotation``.

- Annotation: ``;``-separated objects ``type x y x y ...``: type 0 rectangle ``x1 y1 x2 y2``, 1
  ellipse given by its bounding box ``x1 y1 x2 y2``, 2 polygon ``x1 y1 x2 y2 x3 y3 ...``; empty = no
  object (docs/formats.md).
- Samples: ``sample_id`` = ``{split}/{image_name}``; ``extra["shapes"]`` = ``[(type, coords), ...]``;
  ``boxes`` = one ``x1, y1, x2, y2`` per object (rectangle as is, ellipse its bounding box, polygon its
  bounding box — or MGCA's heuristic with ``polygon_box="mgca"``); ``labels`` = ``[has object]``;
  ``official_split`` = ``"train"`` / ``"dev"`` (dev.csv is the test set).
- Masks: rectangles filled, ellipses rasterised, polygons filled (OpenCV).
- Splits: ``g2d`` (valid = 20 % of train: 6,400 / 1,600 / 1,000) and ``mgca`` (10 %: 7,200 / 800 / 1,000).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from g2d_bench.datasets.base import Release, Sample
from g2d_bench.datasets.labelfiles import read_csv, value_error
from g2d_bench.datasets.splits import SplitSpec
from g2d_bench.errors import G2DBenchError

RECTANGLE, ELLIPSE, POLYGON = 0, 1, 2
LISTS = (("train.csv", "train"), ("dev.csv", "dev"))
POLYGON_BOXES = ("bbox", "mgca")
#: MGCA code (preprocess/object_cxr.py, polylabel_box): the polygon outline is buffered by 100 px and
#: its pole of inaccessibility found with tolerance 10 px.
MGCA_BUFFER, MGCA_TOLERANCE = 100.0, 10.0

Shape = tuple[int, tuple[float, ...]]


def parse_annotation(text: str, *, where: str = "annotation") -> list[Shape]:
    """``[(type, coords), ...]`` of one annotation string; blank → ``[]``.

    Raises :class:`G2DBenchError` naming ``where`` for an unknown type, a non-number, or the wrong
    number of coordinates (4 for types 0/1, an even number ≥ 4 for polygons).
    """
    shapes: list[Shape] = []
    for part in str(text).split(";"):
        tokens = part.split()
        if not tokens:
            continue
        try:
            kind, coords = int(tokens[0]), tuple(float(t) for t in tokens[1:])
        except ValueError:
            raise G2DBenchError(f"{where}: object {part.strip()!r} is not 'type x y x y ...'") from None
        if kind not in (RECTANGLE, ELLIPSE, POLYGON):
            raise G2DBenchError(f"{where}: object type {kind} in {part.strip()!r} is not 0, 1 or 2")
        valid = len(coords) == 4 if kind != POLYGON else len(coords) >= 4 and len(coords) % 2 == 0
        if not valid:
            need = "4 coordinates" if kind != POLYGON else "an even number (>= 4) of coordinates"
            raise G2DBenchError(f"{where}: object {part.strip()!r} needs {need}")
        shapes.append((kind, coords))
    return shapes


def shape_box(shape: Shape, polygon_box: str = "bbox") -> np.ndarray:
    """``x1, y1, x2, y2`` (float32) of one shape: the bounding box of its coordinates, or for a polygon
    with ``polygon_box="mgca"`` MGCA's box (see :func:`mgca_polygon_box`)."""
    kind, coords = shape
    points = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if kind == POLYGON and polygon_box == "mgca":
        return mgca_polygon_box(points)
    return np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float32)


def mgca_polygon_box(points: np.ndarray) -> np.ndarray:
    """MGCA's polygon box (compat): centred on the pole of inaccessibility of the closed outline
    buffered by 100 px, half-extent per axis = the farther side of the polygon's bounding box.

    The box contains the bounding box and is symmetric about that centre, so it is larger whenever the
    centre is off the bounding box's middle. Needs shapely (``pip install shapely``); shapely 2 finds
    the pole with GEOS, so the centre may differ from MGCA's shapely-1 result by up to the 10-px tolerance.
    """
    try:
        from shapely.geometry import LineString
        from shapely.ops import polylabel
    except ImportError:
        raise G2DBenchError(
            "Object-CXR polygon_box='mgca' needs shapely; `pip install shapely` or use polygon_box='bbox'"
        ) from None
    outline = LineString(np.vstack([points, points[:1]]))
    centre = polylabel(outline.buffer(MGCA_BUFFER), tolerance=MGCA_TOLERANCE)
    cxy = np.array([centre.x, centre.y])
    low, high = points.min(axis=0), points.max(axis=0)
    half = np.maximum(np.abs(low - cxy), np.abs(high - cxy))
    return np.concatenate([cxy - half, cxy + half]).astype(np.float32)


class ObjectCXR(Release):
    """Object-CXR under ``root``: ``train.csv``, ``dev.csv``, ``train/``, ``dev/``.

    ``polygon_box``: ``"bbox"`` (default: a polygon's own bounding box) or ``"mgca"`` (MGCA's code).
    """

    name = "object-cxr"
    title = "Object-CXR"
    label_names = ("Foreign object",)
    provides = frozenset({"labels", "boxes", "mask"})
    label_files = tuple(relative for relative, _ in LISTS)

    def __init__(self, root: str | Path, *, polygon_box: str = "bbox") -> None:
        super().__init__(root)
        if polygon_box not in POLYGON_BOXES:
            raise G2DBenchError(f"Object-CXR: polygon_box must be one of {', '.join(POLYGON_BOXES)}, not {polygon_box!r}")
        self.polygon_box = polygon_box

    def _load_samples(self) -> list[Sample]:
        samples = []
        for relative, split in LISTS:
            table = read_csv(self, relative, ("image_name", "annotation"), dtype=str, keep_default_na=False)
            for row, (name, text) in enumerate(zip(table["image_name"].str.strip(), table["annotation"])):
                if not name:
                    raise value_error(self, relative, row + 2, "blank image_name")
                shapes = parse_annotation(text, where=f"{self.title}: {relative} line {row + 2}")
                samples.append(self._sample(name, split, shapes))
        return samples

    def _sample(self, name: str, split: str, shapes: Sequence[Shape]) -> Sample:
        boxes = [shape_box(shape, self.polygon_box) for shape in shapes]
        sample_id = f"{split}/{name}"
        return Sample(
            sample_id=sample_id, patient_id=sample_id, image_path=self.root / split / name,
            labels=np.array([1.0 if shapes else 0.0], dtype=np.float32),
            boxes=np.stack(boxes) if boxes else np.zeros((0, 4), dtype=np.float32),
            official_split=split, extra={"shapes": list(shapes)},
        )

    def read_mask(self, sample: Sample, height: int, width: int) -> np.ndarray:
        """Union of the objects, bool height×width: rectangles and polygons filled, ellipses rasterised."""
        import cv2

        mask = np.zeros((height, width), dtype=np.uint8)
        for kind, coords in sample.extra.get("shapes", ()):
            points = np.rint(np.asarray(coords, dtype=np.float64).reshape(-1, 2)).astype(np.int32)
            if kind == RECTANGLE:
                cv2.rectangle(mask, tuple(map(int, points[0])), tuple(map(int, points[1])), 1, thickness=-1)
            elif kind == ELLIPSE:
                (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
                centre, axes = (int(x1 + x2) // 2, int(y1 + y2) // 2), (int(x2 - x1) // 2, int(y2 - y1) // 2)
                cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, thickness=-1)
            else:
                cv2.fillPoly(mask, [points], 1)
        return mask.astype(bool)

    @classmethod
    def split_specs(cls) -> dict[str, SplitSpec]:
        return {
            "g2d": SplitSpec(
                name="g2d", source="G2D Table 6: 6,400 / 1,600 / 1,000",
                test="dev", valid=0.2, group_by="image", notes="test = official dev.csv; valid = 20% of train.csv",
            ),
            "mgca": SplitSpec(
                name="mgca", source="MGCA code (preprocess/object_cxr.py): train_test_split(test_size=0.1)",
                test="dev", valid=0.1, group_by="image", notes="valid = 10% of train.csv: 7,200 / 800 / 1,000",
            ),
        }
