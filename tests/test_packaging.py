"""The one-namespace install (DESIGN.md) must list every sub-package folder."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    listed = set(config["packages"])
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"
    missing_folders = {p for p in listed if p not in found}
    assert not missing_folders, f"listed but absent: {sorted(missing_folders)}"


def test_console_script_points_at_main():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["scripts"]["g2d-bench"] == "g2d_bench.cli:main"
    from g2d_bench.cli import main

    assert callable(main)


def test_torch_is_a_range_not_a_pin():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = [d for d in deps if d.replace(" ", "").startswith(("torch>", "torch<", "torch="))]
    assert torch and "==" not in torch[0]
