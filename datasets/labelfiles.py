"""Reading a release's label files with one-line errors: missing file, unreadable CSV, renamed columns,
malformed values (with the file and line named).

Shared by the release loaders (``mimic.py``, ``chexpert.py``, …). Line numbers in messages are 1-based
file lines, so CSV row ``i`` (0-based, after the header) is line ``i + 2``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from g2d_bench.errors import G2DBenchError

if TYPE_CHECKING:
    import pandas as pd

    from g2d_bench.datasets.base import Release


def pick_file(release: "Release", *candidates: str) -> str:
    """The first of ``candidates`` (paths relative to the root) that exists; else the error for the first."""
    for relative in candidates:
        if (release.root / relative).exists():
            return relative
    release.require(candidates[0])  # raises, naming the file
    raise AssertionError("unreachable")


def value_error(release: "Release", relative: str, line: int | None, message: str) -> G2DBenchError:
    """``G2DBenchError`` for a malformed value at ``relative`` line ``line`` (1-based; None = whole file)."""
    where = f"{relative} line {line}" if line is not None else relative
    return G2DBenchError(
        f"{release.title}: {where}: {message}; is {release.root / relative} an unmodified copy of the release?"
    )


def read_csv(release: "Release", relative: str, columns: Sequence[str], **kwargs) -> "pd.DataFrame":
    """``pandas.read_csv`` of ``root/relative`` that must have ``columns`` (column names are stripped).

    Missing file, unparsable CSV or missing columns raise :class:`G2DBenchError` naming the file; the
    column error lists the expected and the found columns.
    """
    import pandas as pd

    path = release.require(relative)
    try:
        table = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise G2DBenchError(f"{release.title}: cannot parse {path} ({detail}); re-download the release") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise G2DBenchError(
            f"{release.title}: {relative} has no column {', '.join(repr(c) for c in missing)} "
            f"(expected: {', '.join(columns)}; found: {', '.join(map(str, table.columns))}). "
            f"Is --data-root pointing at the {release.title} release?"
        )
    return table


def read_lines(release: "Release", relative: str) -> list[str]:
    """Lines of a text list file (``train_val_list.txt``, COVIDx ``train.txt``), newline stripped."""
    path: Path = release.require(relative)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as error:
        raise G2DBenchError(f"{release.title}: cannot read {path} ({type(error).__name__}); re-download the release") from None
