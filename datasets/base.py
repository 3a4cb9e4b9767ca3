"""What every dataset release loader provides: a list of :class:`Sample` parsed from the release's own
label files, image reading, masks, and the split manifests it defines.

A loader reads the release exactly as it is published under ``root`` (the same code reads the real
data and SynthCXR's copies of those formats). Parsing label files is cheap and happens once per
``Release`` object; images are decoded on demand, and the preprocessed cache (``cache.py``) makes
sure that happens once per preprocessing, not once per epoch.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from g2d_bench.errors import G2DBenchError

if TYPE_CHECKING:
    from g2d_bench.datasets.splits import SplitSpec


@dataclass
class Sample:
    """One image of a release and everything the tasks may need from it.

    - ``labels``: float32 vector aligned with ``Release.label_names``; values as the release gives
      them: 1 positive, 0 negative, -1 uncertain (CheXpert), NaN blank. ``None`` if the release has
      no image-level labels.
    - ``boxes``: N×4 float32, ``x1, y1, x2, y2`` in pixels of the image file as stored; ``None`` if
      the release has no boxes, an empty 0×4 array for an image with none.
    - ``report``: free text (MIMIC-CXR: FINDINGS + IMPRESSION), else ``None``.
    - ``official_split``: the release's own name for the official split the sample belongs to
      (``"train"``, ``"valid"``, ``"test"``, MIMIC's ``"validate"``, Object-CXR's ``"dev"``), or None.
    - ``extra``: release-specific fields (SIIM RLE strings, Object-CXR shapes, view position…).
    """

    sample_id: str
    patient_id: str
    image_path: Path
    labels: np.ndarray | None = None
    boxes: np.ndarray | None = None
    report: str | None = None
    official_split: str | None = None
    extra: dict = field(default_factory=dict)


class Release(ABC):
    """A dataset release on disk under ``root``.

    Subclasses set the class attributes and implement :meth:`_load_samples`; they may override
    :meth:`read_mask` (SIIM decodes RLE, Object-CXR rasterises shapes; the default fills boxes).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    label_names: ClassVar[tuple[str, ...]] = ()
    #: subset of {"labels", "boxes", "mask", "report"}
    provides: ClassVar[frozenset[str]] = frozenset()
    #: label / list files, relative to ``root``, whose sizes and hashes go into manifest.json
    label_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise G2DBenchError(
                f"{self.title}: data root {self.root} does not exist or is not a folder; "
                f"pass --data-root pointing at the unpacked release"
            )
        self._samples: list[Sample] | None = None

    # -- parsing ---------------------------------------------------------------------------------
    @abstractmethod
    def _load_samples(self) -> list[Sample]:
        """Parse the release's label files into samples (no image decoding)."""

    def samples(self) -> list[Sample]:
        """All samples of the release, parsed once and kept."""
        if self._samples is None:
            self._samples = self._load_samples()
            if not self._samples:
                raise G2DBenchError(f"{self.title}: no samples found under {self.root}; is this the right folder?")
        return self._samples

    def require(self, relative: str) -> Path:
        """Path of a file the release must contain, or a one-line error naming it."""
        path = self.root / relative
        if not path.exists():
            raise G2DBenchError(
                f"{self.title}: missing {path}; is --data-root pointing at the unpacked {self.title} release?"
            )
        return path

    # -- pixels -----------------------------------------------------------------------------------
    def read_image(self, sample: Sample) -> np.ndarray:
        """The image as uint8, H×W grayscale (DICOM, PNG or JPEG; see ``imageio.read_image``)."""
        from g2d_bench.datasets.imageio import read_image

        return read_image(sample.image_path)

    def read_mask(self, sample: Sample, height: int, width: int) -> np.ndarray:
        """Binary lesion mask, bool H×W, in the image's own pixel grid. Default: filled boxes."""
        mask = np.zeros((height, width), dtype=bool)
        if sample.boxes is not None:
            for x1, y1, x2, y2 in np.asarray(sample.boxes, dtype=np.float64):
                r0, r1 = max(int(np.floor(y1)), 0), min(int(np.ceil(y2)), height)
                c0, c1 = max(int(np.floor(x1)), 0), min(int(np.ceil(x2)), width)
                mask[r0:r1, c0:c1] = True
        return mask

    # -- splits -----------------------------------------------------------------------------------
    @classmethod
    def split_specs(cls) -> dict[str, "SplitSpec"]:
        """The split manifests this release defines, by name (the first is the default)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"
