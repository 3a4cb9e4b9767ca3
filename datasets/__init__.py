"""Dataset releases (official on-disk formats), split manifests, the preprocessed cache and SynthCXR.

``DATASETS`` maps a dataset name to its :class:`~g2d_bench.datasets.base.Release` class. Entries are
lazy so that importing this package does not import pydicom, OpenCV or pandas.
"""
from g2d_bench.registry import Registry

DATASETS: Registry = Registry("dataset")
DATASETS.register("mimic-cxr", "g2d_bench.datasets.mimic:MimicCXR", "MIMIC-CXR-JPG v2.0.0 images + reports (pretraining pairs)")
DATASETS.register("chexpert", "g2d_bench.datasets.chexpert:CheXpert", "CheXpert v1.0 (small or full): 14 labels, U-ones/U-zeros policy, 5x200")
DATASETS.register("rsna", "g2d_bench.datasets.rsna:RSNAPneumonia", "RSNA Pneumonia Detection Challenge (stage 2): labels + boxes, DICOM")
DATASETS.register("siim", "g2d_bench.datasets.siim:SIIMPneumothorax", "SIIM-ACR Pneumothorax: RLE masks, nested DICOM folders")
DATASETS.register("nih-cxr14", "g2d_bench.datasets.nih:NIHChestXray14", "NIH ChestX-ray14: 14 labels, official train_val/test lists")
DATASETS.register("covidx", "g2d_bench.datasets.covidx:COVIDx", "COVIDx CXR: normal / pneumonia / COVID-19 split lists")
DATASETS.register("object-cxr", "g2d_bench.datasets.objcxr:ObjectCXR", "Object-CXR: foreign objects as rectangles, ellipses, polygons")
