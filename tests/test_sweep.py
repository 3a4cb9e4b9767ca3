"""Named grids and sweeps: grid files load and validate, the submitit local executor (the SLURM code
path as local processes) writes the same records as the inline loop, and two sweeps sharing one
cache and one results folder at the same time both finish with every record complete — first-use
SynthCXR generation and quick pretraining included."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from g2d_bench.errors import G2DBenchError
from g2d_bench.records import iter_records
from g2d_bench.sweep import GRID_DIR, Grid, load_grid

#: a tiny grid: the quick G2D pretrains for 2 steps on a 200-image SynthCXR copy
TINY = textwrap.dedent("""
    description: test grid
    methods: [random, g2d]
    tasks: [rsna-cls]
    fractions: [0.1, 1.0]
    seeds: [0]
    scale: cpu
    image_size: 64
    synth_n: 200
    overrides: {max_epochs: 2}
    quick: {max_steps: 2, batch_size: 8, overrides: {image_size: 64, scratch_mlm_steps: 2, scratch_layers: 1, scratch_hidden: 32}}
""")


def _metrics(out: Path) -> dict:
    return {(r["key"]["method"], r["key"]["task"], r["key"]["fraction"], r["key"]["seed"]): r["metrics"] for r in iter_records(out)}


def _sweep(tmp_path, grid_file, out, *extra, home=None, background=False):
    env = {**os.environ, "G2D_BENCH_CACHE": str(home or tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "g2d_bench.cli", "sweep", "--grid", str(grid_file), "--out", str(out), "--no-progress", *extra]
    if background:
        return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("name", sorted(p.stem for p in GRID_DIR.glob("*.yaml")))
def test_named_grids_load_and_name_registered_methods_and_tasks(name):
    grid = load_grid(name)
    assert grid.name == name and grid.methods and grid.tasks and grid.combinations()


def test_a_task_runs_at_its_own_fractions(tmp_path):
    """``task_fractions`` replaces the grid's fractions for the tasks it names; zero-shot stays at 1;
    an unknown task in it fails when the grid loads."""
    path = tmp_path / "g.yaml"
    path.write_text("methods: [random]\ntasks: [rsna-cls, siim-seg, rsna-zs]\nfractions: [0.01, 0.1, 1.0]\n"
                    "task_fractions: {siim-seg: [0.01, 0.1]}\n")
    grid = load_grid(path)
    assert [(t, f) for _, t, f, _ in grid.combinations()] == [
        ("rsna-cls", 0.01), ("rsna-cls", 0.1), ("rsna-cls", 1.0), ("siim-seg", 0.01), ("siim-seg", 0.1), ("rsna-zs", 1.0)]
    assert Grid.from_dict(grid.to_dict()) == grid
    path.write_text("methods: [random]\ntasks: [rsna-cls]\ntask_fractions: {siim-sg: [0.1]}\n")
    with pytest.raises(G2DBenchError, match="siim-sg"):
        load_grid(path)


def test_grid_errors_are_one_line(tmp_path):
    with pytest.raises(G2DBenchError, match="no grid 'nope'"):
        load_grid("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [random]\ntasks: [rsna-cls]\nepochs: 3\n")
    with pytest.raises(G2DBenchError, match="unknown field"):
        load_grid(bad)
    bad.write_text("methods: [randon]\ntasks: [rsna-cls]\n")
    with pytest.raises(G2DBenchError, match="did you mean 'random'"):
        load_grid(bad)


def test_local_executor_equals_inline(tmp_path):
    grid = tmp_path / "tiny.yaml"
    grid.write_text(TINY)
    _sweep(tmp_path, grid, tmp_path / "inline")
    result = _sweep(tmp_path, grid, tmp_path / "local", "--executor", "local", "--shards", "2", "--submitit-folder", str(tmp_path / "jobs"))
    assert "submitted 2 local job(s) for 4 runs" in result.stdout
    inline, local = _metrics(tmp_path / "inline"), _metrics(tmp_path / "local")
    assert len(inline) == 4 and local == inline


def test_two_sweeps_on_one_cache_and_results_folder(tmp_path):
    """Both start on an empty cache: one generates SynthCXR and pretrains the quick G2D while the
    other waits on the locks, then both run (and rewrite) every record."""
    grid = tmp_path / "tiny.yaml"
    grid.write_text(TINY)
    home, out = tmp_path / "shared-cache", tmp_path / "shared-runs"
    procs = [_sweep(tmp_path, grid, out, home=home, background=True) for _ in range(2)]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    records = list(iter_records(out))
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    quick = [p for p in (home / "pretrained").iterdir() if p.is_dir()]
    assert len(quick) == 1 and json.loads((quick[0] / "config.json").read_text())["step"] == 2
    assert not list(home.rglob("*.partial")) and not [p for p in out.rglob("*.tmp")]
    # the same numbers as a sweep alone on a fresh cache
    _sweep(tmp_path, grid, tmp_path / "alone", home=tmp_path / "alone-cache")
    assert _metrics(out) == _metrics(tmp_path / "alone")
