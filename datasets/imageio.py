"""Reading chest X-ray image files as uint8 grayscale, and writing the DICOMs the releases ship.

:func:`read_image` is the one place pixels enter g2d-bench: DICOM (pydicom, including JPEG Baseline
encapsulated pixel data, which pydicom decodes with its Pillow plugin), PNG and JPEG (OpenCV).
Everything comes back as ``uint8`` H×W: MONOCHROME1 is inverted so that bone is bright, and data with
more than 8 bits (12/16-bit DICOM, 16-bit PNG) is min–max rescaled per image to 0..255.

:func:`write_dicom` writes the kind of file RSNA and SIIM publish (8-bit MONOCHROME2, JPEG Baseline
encapsulated; REFERENCE.md "DICOMs of RSNA/SIIM"); SynthCXR and the test fixtures use it.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Mapping

import numpy as np

from g2d_bench.errors import G2DBenchError

DICOM_SUFFIXES = (".dcm", ".dicom")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Secondary Capture Image Storage: the SOP class of the RSNA and SIIM DICOMs (their file headers).
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: Pillow's JPEG quality when writing; high enough that a round trip stays within a few grey levels.
JPEG_QUALITY = 95

_FIX = "re-download the release or run `g2d-bench data check`"


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """``uint8`` array as is; anything else min–max rescaled to 0..255 (a constant image → zeros)."""
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as ``uint8`` H×W grayscale.

    ``.dcm`` through pydicom, ``.png/.jpg/.jpeg`` through OpenCV. A missing, unreadable or corrupt
    file raises :class:`G2DBenchError` naming it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DICOM_SUFFIXES + RASTER_SUFFIXES:
        raise G2DBenchError(f"{path}: unsupported image type {suffix!r} (expected .dcm, .png, .jpg or .jpeg)")
    if not path.is_file():
        raise G2DBenchError(f"missing image {path}; {_FIX}")
    image = _read_dicom(path) if suffix in DICOM_SUFFIXES else _read_raster(path)
    if image.ndim != 2 or image.size == 0:
        raise G2DBenchError(f"{path}: expected a single-frame 2-D image, got shape {image.shape}; {_FIX}")
    return np.ascontiguousarray(image)


def _read_raster(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise G2DBenchError(f"corrupt or unreadable image {path}; {_FIX}")
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    return to_uint8(image)


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except (InvalidDicomError, AttributeError, ValueError, RuntimeError, OSError, KeyError, NotImplementedError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise G2DBenchError(f"corrupt or unreadable DICOM {path} ({detail}); {_FIX}") from None
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3 and int(dataset.get("SamplesPerPixel", 1)) == 3:
        import cv2

        pixels = cv2.cvtColor(to_uint8(pixels), cv2.COLOR_RGB2GRAY)
    image = to_uint8(pixels)
    if photometric == "MONOCHROME1":
        image = 255 - image  # MONOCHROME1: low values are bright (DICOM PS3.3 C.7.6.3.1.2)
    return image


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Baseline JPEG bytes of a ``uint8`` H×W image (Pillow, one grayscale component)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _default_uid(*parts: str) -> str:
    """A deterministic DICOM UID under pydicom's root, derived from ``parts``."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=list(parts)))


def write_dicom(
    path: str | Path,
    image: np.ndarray,
    *,
    patient_id: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    jpeg: bool = True,
    headers: Mapping[str, object] | None = None,
) -> Path:
    """Write ``image`` (``uint8`` H×W) as an 8-bit MONOCHROME2 DICOM at ``path``; returns the path.

    ``jpeg=True`` encapsulates one JPEG Baseline frame (transfer syntax 1.2.840.10008.1.2.4.50, as in
    the RSNA and SIIM releases); ``jpeg=False`` stores raw Explicit VR Little Endian pixels. Missing
    UIDs are derived deterministically from the patient id and the pixel content. ``headers`` maps
    DICOM keywords to values (``{"ViewPosition": "PA", "PixelSpacing": ["0.168", "0.168"]}``), each
    written with its dictionary VR and stored as given, even where the release's own spelling breaks
    the VR's rules (RSNA/SIIM write ``PatientAge`` "51" without its unit); they override the defaults
    above. The file is written atomically.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

    from g2d_bench.io import atomic_path

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise G2DBenchError(f"write_dicom: expected a uint8 H×W image for {path}, got {image.dtype} {image.shape}")
    digest = hashlib.sha1(image.tobytes()).hexdigest()
    study_uid = study_uid or _default_uid(patient_id, "study")
    series_uid = series_uid or _default_uid(patient_id, study_uid, "series")
    sop_uid = sop_uid or _default_uid(patient_id, series_uid, digest)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = SECONDARY_CAPTURE
    dataset.SOPInstanceUID = sop_uid
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = series_uid
    dataset.PatientID = str(patient_id)
    dataset.PatientName = str(patient_id)
    dataset.Modality = "CR"
    dataset.BodyPartExamined = "CHEST"
    dataset.Rows, dataset.Columns = (int(n) for n in image.shape)
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = 8
    dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    if jpeg:
        dataset.PixelData = encapsulate([encode_jpeg(image)])
        dataset["PixelData"].VR = "OB"
        dataset["PixelData"].is_undefined_length = True
        dataset.LossyImageCompression = "01"
    else:
        dataset.PixelData = image.tobytes()
        dataset["PixelData"].VR = "OB"
    _set_headers(dataset, headers or {}, path)
    path = Path(path)
    with atomic_path(path) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)
    return path


def _set_headers(dataset, headers: Mapping[str, object], path: str | Path) -> None:
    """Set ``headers`` (DICOM keyword → value) on ``dataset`` with each keyword's dictionary VR."""
    from pydicom import config
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement

    for keyword, value in headers.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise G2DBenchError(f"write_dicom: {keyword!r} is not a DICOM keyword (writing {path}); check its spelling")
        # IGNORE: the releases' values are written as they are, not as the VR's rules would have them
        dataset[tag] = DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE)
