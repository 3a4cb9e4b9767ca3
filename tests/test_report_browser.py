"""The HTML report: static checks of its markup (always run) and a real headless Chromium that
loads it and checks no console error, every image rendered, and every table number equal to the
records (Chromium + chromedriver from the Debian packages `chromium chromium-driver`, driven by
Selenium; skipped with the reason only where no browser or driver is installed)."""
import json
import os
import re
import shutil
import statistics
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from g2d_bench.errors import G2DBenchError
from g2d_bench.records import RunKey, write_record
from g2d_bench.report import write_report

COMMIT = {"g2d": "1111111111111111111111111111111111111111", "random": "2222222222222222222222222222222222222222+dirty"}
PACKAGES = {"g2d": {"torch": "2.14.1", "numpy": "2.4.6"}, "random": {"torch": "2.13.0", "numpy": "2.4.6"}}
HASH = {"g2d": "a1" * 32, "random": "b2" * 32}
# (method, task, fraction) -> primary AUC of seeds 0, 1, … (made up)
VALUES = {
    ("g2d", "rsna-cls", 0.01): [0.80, 0.82],
    ("g2d", "rsna-cls", 0.1): [0.85, 0.86],
    ("g2d", "rsna-cls", 1.0): [0.90],
    ("random", "rsna-cls", 0.01): [0.60, 0.64],
    ("random", "rsna-cls", 0.1): [0.66, 0.62],
    ("random", "rsna-cls", 1.0): [0.70, 0.71],
    ("g2d", "chexpert-cls", 0.1): [0.70, 0.72, 0.77],
    ("random", "chexpert-cls", 0.1): [0.55, 0.61, 0.58],
}
CLASSES = ("Atelectasis", "Edema")
# spot checks typed by hand: mean ± sample SD, ×100, one decimal
SHOWN = {
    ("g2d", "rsna-cls", 0.01): "81.0 ± 1.4",
    ("random", "rsna-cls", 0.1): "64.0 ± 2.8",
    ("g2d", "rsna-cls", 1.0): "90.0",
    ("g2d", "chexpert-cls", 0.1): "73.0 ± 3.6",
}


def _write_runs(root: Path) -> Path:
    for (method, task, fraction), values in VALUES.items():
        for seed, value in enumerate(values):
            key = RunKey(method, HASH[method], task, 1, fraction, seed, 64, (), "synthcxr-v1")
            metrics = {"auc": value}
            if task == "chexpert-cls":
                metrics.update({f"auc/{name}": round(value + (0.05 if i else -0.05), 4) for i, name in enumerate(CLASSES)})
            body = {
                "status": "ok", "metrics": metrics, "primary": "auc",
                "task": {"name": task, "version": 1, "protocol": "mgca-linear", "primary": "auc"},
                "method": {"name": method, "checkpoint_hash": HASH[method]},
                "provenance": {"git_commit": COMMIT[method], "packages": PACKAGES[method], "python": "3.11.7"},
            }
            scores = pd.DataFrame({"sample_id": ["a", "b"], "y": [0, 1], "p": [0.2, 0.7]})
            write_record(root, key, body, scores)
    skipped = RunKey("g2d", HASH["g2d"], "rsna-zeroshot", 1, 1.0, 0, 64, (), "synthcxr-v1")
    write_record(root, skipped, {"status": "skipped", "reason": "method lacks capability text", "task": {"protocol": "zero-shot", "primary": "auc"}})
    return root


class _Cells(HTMLParser):
    """Table cells with a data-mean (attributes and displayed text), every src/href, and script tags."""

    def __init__(self):
        super().__init__()
        self.cells, self.links, self.scripts, self._open = [], [], 0, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        self.scripts += tag == "script"
        if tag == "td" and "data-mean" in attrs:
            self._open = {**attrs, "text": ""}
            self.cells.append(self._open)

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag):
        if tag == "td":
            self._open = None


def _parse(path: Path) -> _Cells:
    parser = _Cells()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _check_cell(key, mean, std, text):
    """One cell against the made-up values: attributes exact, text ×100 to one decimal."""
    values = VALUES[key]
    assert float(mean) == pytest.approx(statistics.fmean(values), abs=1e-12), key
    expected_std = statistics.stdev(values) if len(values) > 1 else 0.0
    assert float(std) == pytest.approx(expected_std, abs=1e-12), key
    numbers = [float(x) for x in re.findall(r"\d+\.\d", text)]
    assert numbers[0] == pytest.approx(round(statistics.fmean(values) * 100, 1), abs=0.051), (key, text)
    if len(values) > 1:
        assert len(numbers) == 2 and numbers[1] == pytest.approx(round(expected_std * 100, 1), abs=0.051), (key, text)
    else:
        assert len(numbers) == 1, (key, text)
    if key in SHOWN:
        assert text.strip() == SHOWN[key]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    runs = _write_runs(root / "runs")
    return runs, write_report(runs, root / "site")


# ---- static checks (no browser) ------------------------------------------------------------

def test_every_cell_carries_the_record_values(report):
    _, page = report
    cells = _parse(page).cells
    keys = [(c["data-method"], c["data-task"], float(c["data-fraction"])) for c in cells]
    assert sorted(keys) == sorted(VALUES)  # one cell per (method, task, fraction), nothing else
    for cell, key in zip(cells, keys):
        _check_cell(key, cell["data-mean"], cell["data-std"], cell["text"])
        assert [float(v) for v in cell["data-values"].split()] == VALUES[key]
        assert cell["data-seeds"] == " ".join(str(s) for s in range(len(VALUES[key])))
        assert cell["data-metric"] == "auc"


def test_cell_provenance_names_the_records(report):
    runs, page = report
    for cell in _parse(page).cells:
        method, task, fraction = cell["data-method"], cell["data-task"], float(cell["data-fraction"])
        title = cell["title"]
        assert COMMIT[method][:10] in title and HASH[method][:12] in title
        paths = re.findall(r"\S+\.json", title)
        assert len(paths) == len(VALUES[(method, task, fraction)])
        for path in paths:
            record = json.loads((runs / path).read_text())
            assert (record["key"]["method"], record["key"]["task"], record["key"]["fraction"]) == (method, task, fraction)
            assert record["metrics"]["auc"] in VALUES[(method, task, fraction)]
    text = page.read_text(encoding="utf-8")
    for method, commit in COMMIT.items():  # full commits, package versions and hashes of the records
        assert commit in text and f"torch {PACKAGES[method]['torch']}" in text and HASH[method] in text
    assert "generating code commit" in text
    assert "rsna-zeroshot" in text and "method lacks capability text" in text  # the skipped record
    assert text.count('<details id="prov-cell-') == len(VALUES)


def test_page_is_self_contained(report):
    _, page = report
    parsed = _parse(page)
    assert parsed.scripts == 0
    images = [link for link in parsed.links if link.startswith("data:image/png;base64,")]
    assert len(images) == 3  # rsna-cls and chexpert-cls curves, chexpert-cls per-class bars
    for link in parsed.links:
        assert link.startswith(("data:", "#")), link


def test_linked_figures_and_same_bytes_twice(tmp_path, report):
    runs, page = report
    linked = write_report(runs, tmp_path / "linked", embed=False)
    files = [link for link in _parse(linked).links if not link.startswith(("data:", "#"))]
    assert len(files) == 3 and all(f.startswith("plots/") and (linked.parent / f).is_file() for f in files)
    assert write_report(runs, tmp_path / "again").read_bytes() == page.read_bytes()


def test_no_records_is_an_error(tmp_path):
    with pytest.raises(G2DBenchError, match="no complete run records"):
        write_report(tmp_path / "empty", tmp_path / "site")


# ---- a real browser ------------------------------------------------------------------------

def _find(env: str, names: tuple[str, ...]) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    return next((found for name in names if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    binary = _find("G2D_BENCH_CHROMIUM", ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"))
    driver_path = _find("G2D_BENCH_CHROMEDRIVER", ("chromedriver",))
    if binary is None or driver_path is None:
        pytest.skip(f"no headless browser: chromium={binary}, chromedriver={driver_path}; install the Debian packages `chromium chromium-driver` (.ci/run does)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed; pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1024"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(15)
    yield driver
    driver.quit()


def _load(driver, page: Path) -> list[dict]:
    driver.get_log("browser")  # reading the log empties it: drop entries of an earlier page
    driver.get(page.resolve().as_uri())
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _images(driver) -> list[list]:
    return driver.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.getAttribute('src').slice(0, 30)]);")


def test_browser_catches_errors_and_broken_images(browser, tmp_path):
    """The checks below can fail: a page with a script error and a missing image trips both."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body><img src="missing.png"><script>throw new Error("boom")</script></body></html>')
    severe = _load(browser, bad)
    assert any("boom" in entry["message"] for entry in severe)
    assert _images(browser)[0][1] == 0


def test_report_in_a_browser(browser, report):
    _, page = report
    assert _load(browser, page) == []
    images = _images(browser)
    assert len(images) == 3 and all(complete and width > 0 for complete, width, _ in images), images
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('td[data-mean]')).map(td => "
        "[td.dataset.method, td.dataset.task, td.dataset.fraction, td.dataset.mean, td.dataset.std, td.innerText]);"
    )
    assert sorted((m, t, float(f)) for m, t, f, *_ in cells) == sorted(VALUES)
    for method, task, fraction, mean, std, text in cells:
        _check_cell((method, task, float(fraction)), mean, std, text)
    # the best cell of a column is bold as displayed
    weight = browser.execute_script("return getComputedStyle(document.querySelector('td.best')).fontWeight;")
    assert int(weight) >= 600


def test_linked_report_in_a_browser(browser, report, tmp_path):
    runs, _ = report
    page = write_report(runs, tmp_path / "linked", embed=False)
    assert _load(browser, page) == []
    images = _images(browser)
    assert len(images) == 3 and all(complete and width > 0 and src.startswith("plots/") for complete, width, src in images), images
