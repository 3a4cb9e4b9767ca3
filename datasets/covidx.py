"""COVIDx CXR: ``train.txt`` / ``test.txt`` lines ``patient_id filename class data_source`` (no header).

- Lines are split from the right (``rsplit(maxsplit=3)``): some patient ids contain spaces.
- Samples: ``sample_id`` = ``{split}/{filename}`` (the image's path under the root, unique even if a
  file name recurs across lists); ``labels`` = one-hot over (normal, pneumonia, COVID-19), with the
  older spelling ``COVID19`` accepted; ``official_split`` = ``"train"`` / ``"test"``;
  ``extra["source"]`` = the data source.
- Splits: ``g2d`` (test = official test; valid = 20 % of the train *patients*; G2D Table 6 reports
  23,988 / 5,998 / 400, which is MGCA's 80/20 split by image — by patient the counts differ a little)
  and ``mgca`` (valid = 20 % of the train *images*, as MGCA's code; rounding gives 23,989 / 5,997
  where sklearn's ``train_test_split`` gives 23,988 / 5,998).
"""
from __future__ import annotations

import numpy as np

from g2d_bench.datasets.base import Release, Sample
from g2d_bench.datasets.labelfiles import read_lines, value_error
from g2d_bench.datasets.splits import SplitSpec

CLASSES = ("normal", "pneumonia", "COVID-19")
#: Accepted spellings (lower-cased) → class; "COVID19" is the older releases' spelling (docs/formats.md).
SPELLINGS = {"normal": "normal", "pneumonia": "pneumonia", "covid-19": "COVID-19", "covid19": "COVID-19"}
LISTS = (("train.txt", "train"), ("test.txt", "test"))


class COVIDx(Release):
    """COVIDx CXR under ``root``: ``train.txt``, ``test.txt``, ``train/``, ``test/``."""

    name = "covidx"
    title = "COVIDx CXR"
    label_names = CLASSES
    provides = frozenset({"labels"})
    label_files = tuple(relative for relative, _ in LISTS)

    def _load_samples(self) -> list[Sample]:
        samples = []
        for relative, split in LISTS:
            for number, line in enumerate(read_lines(self, relative), start=1):
                if line.strip():
                    samples.append(self._parse_line(line, relative, number, split))
        return samples

    def _parse_line(self, line: str, relative: str, number: int, split: str) -> Sample:
        parts = line.strip().rsplit(maxsplit=3)
        if len(parts) != 4:
            raise value_error(self, relative, number, f"{line.strip()!r} is not 'patient_id filename class data_source'")
        patient, filename, label, source = parts
        cls = SPELLINGS.get(label.lower())
        if cls is None:
            raise value_error(
                self, relative, number,
                f"class {label!r} is not one of {', '.join(CLASSES)} (a positive/negative list is the binary "
                f"COVIDx release, not the 3-class one)",
            )
        labels = np.zeros(len(CLASSES), dtype=np.float32)
        labels[CLASSES.index(cls)] = 1.0
        return Sample(
            sample_id=f"{split}/{filename}", patient_id=patient, image_path=self.root / split / filename,
            labels=labels, official_split=split, extra={"source": source},
        )

    @classmethod
    def split_specs(cls) -> dict[str, SplitSpec]:
        return {
            "g2d": SplitSpec(
                name="g2d", source="G2D Table 6: 23,988 / 5,998 / 400",
                test="test", valid=0.2, group_by="patient",
                notes="valid = 20% of the train.txt patients, so the counts differ slightly from G2D's "
                      "(an image-level 80/20 split); test = official test.txt",
            ),
            "mgca": SplitSpec(
                name="mgca", source="MGCA code (preprocess/covidx.py): train_test_split(train_size=0.8) by image",
                test="test", valid=0.2, group_by="image",
                notes="by image as MGCA; round(0.2 n) gives one image fewer in valid than sklearn's split",
            ),
        }
