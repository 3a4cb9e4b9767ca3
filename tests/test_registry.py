import pytest

from g2d_bench.errors import G2DBenchError
from g2d_bench.registry import Registry


def test_register_get_and_lazy_entries():
    reg = Registry("thing")
    reg.register("plain", 42)
    reg.register("lazy", "g2d_bench.io:sha256_json")
    assert reg.get("plain") == 42
    from g2d_bench.io import sha256_json

    assert reg.get("lazy") is sha256_json
    assert reg.names() == ["lazy", "plain"]
    assert "lazy" in reg and len(reg) == 2


def test_duplicate_name_is_an_error():
    reg = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(G2DBenchError, match="already registered"):
        reg.register("a", 2)
    assert reg.get("a") == 1


def test_unknown_name_suggests_closest():
    reg = Registry("method")
    for name in ("gloria", "g2d", "mgca", "convirt"):
        reg.register(name, name)
    with pytest.raises(G2DBenchError, match=r"did you mean 'gloria'") as info:
        reg.get("glorla")
    assert "\n" not in str(info.value)


def test_decorator_registers():
    reg = Registry("task")

    @reg.decorator("f", help="a function")
    def f():
        return 1

    assert reg.get("f") is f and reg.help("f") == "a function"


def test_lazy_import_of_package_is_light():
    import subprocess
    import sys

    code = "import sys, g2d_bench, g2d_bench.methods, g2d_bench.tasks, g2d_bench.datasets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
