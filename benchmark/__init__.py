"""g2d-bench: a benchmark and evaluation suite for medical vision-language pretraining on chest X-rays.

Importing the package is cheap: heavy libraries (torch, transformers, smp, ultralytics) are imported
inside the functions that need them, and registry entries are lazy.
"""
from g2d_bench.errors import G2DBenchError

__version__ = "0.1.0"
__all__ = ["G2DBenchError", "__version__"]
