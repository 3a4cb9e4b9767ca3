"""Bad CLI input: one line on stderr, exit status 2, nothing written."""
import subprocess
import sys

import pytest


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "g2d_bench.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--method", "gloria2", "--task", "rsna-cls", "--fraction", "0.01"], "unknown method 'gloria2'"),
        (["run", "--method", "random", "--task", "rsna-clss", "--fraction", "0.01"], "did you mean 'rsna-cls'"),
        (["run", "--method", "random", "--task", "rsna-cls", "--fraction", "0"], "fraction must be in (0, 1]"),
        (["run", "--method", "random", "--task", "rsna-cls", "--fraction", "1.5"], "fraction must be in (0, 1]"),
        (["run", "--method", "random", "--task", "rsna-cls", "--fraction", "abc"], "fraction must be a number"),
        (["run", "--method", "imagenet", "--task", "rsna-cls", "--fraction", "0.1", "--checkpoint", "/nope/resnet50.pth"], "does not exist"),
        (["run", "--method", "imagenet", "--task", "rsna-cls", "--fraction", "0.1"], "needs --checkpoint"),
        (["sweep", "--methods", "random", "--tasks", "rsna-cls", "--shard", "3/2"], "need 0 <= i < n"),
        (["leaderboard", "--out", "/nonexistent/runs"], "no run records"),
        (["list", "things"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert not (tmp_path / "runs").exists()


def test_help_and_list_do_not_import_torch():
    code = "import sys; from g2d_bench.cli import main; main(['list', 'methods']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")
    assert "random" in out.stdout and "imagenet" in out.stdout
