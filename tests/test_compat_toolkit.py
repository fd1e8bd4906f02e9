"""The compatibility toolkit adapters' ``compat`` modules share: the weights table and its
message, the replace-once helper and the one way to tell the user."""
from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

from vem_plugins.authoring import compat
from vem_plugins.authoring.compat import (DRN_CITYSCAPES, INCEPTION, VGG16, WEIGHTS,
                                          missing_weights, replace_once, wrap_once)

ROOT = Path(__file__).resolve().parents[1]


# -- the weights table ------------------------------------------------------------------------

def test_hub_weights_live_in_torch_home_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert VGG16.path() == str(tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth")
    text = missing_weights(VGG16, "the loss")
    assert text.startswith("the loss needs the ImageNet VGG16 weights vgg16-397923af.pth: ")
    assert VGG16.path() in text and VGG16.url in text and "TORCH_HOME" in text


def test_checkout_weights_are_named_with_their_flag_and_path(tmp_path):
    text = missing_weights(DRN_CITYSCAPES, "The Cityscapes mIoU", tmp_path / "drn.pth")
    assert f"--drn_path {tmp_path / 'drn.pth'} do not exist" in text
    assert DRN_CITYSCAPES.url in text
    assert DRN_CITYSCAPES.path("/co") == "/co/drn-d-105_ms_cityscapes.pth"


def _code_strings(path: Path):
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docs]


def test_each_weights_file_is_spelled_once_in_code():
    """The table is the one place code spells a weights file's name (docstrings may name it)."""
    names = {w.file for w in WEIGHTS}
    assert len(names) == len(WEIGHTS) == 4 and INCEPTION in WEIGHTS
    found = {}
    for path in [*(ROOT / "vem_plugins").rglob("*.py"), *(ROOT / "adapters").rglob("*.py"),
                 *(ROOT / "examples").glob("*/vem_*/*.py")]:
        for text in _code_strings(path):
            for name in names:
                if name in text:
                    found.setdefault(name, set()).add(path.relative_to(ROOT).as_posix())
    assert found == {name: {"vem_plugins/authoring/compat.py"} for name in names}


def test_importing_the_toolkit_imports_no_torch():
    """CAT's first fix runs before torch is imported, and declarations import the toolkit."""
    code = "import sys, vem_plugins.authoring.compat; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- replace_once --------------------------------------------------------------------------------

def loud(original):
    def wrapper(*args):
        return "loud " + original(*args)
    return wrapper


def polite(original):
    def wrapper(*args):
        return "please, " + original(*args)
    return wrapper


def test_replacing_twice_wraps_once_and_keeps_name_and_doc():
    def greet(name):
        """Say hello."""
        return f"hello {name}"

    ns = {"greet": greet}
    assert replace_once(ns, "greet", loud) is True
    assert replace_once(ns, "greet", loud) is False
    assert ns["greet"]("ann") == "loud hello ann"
    assert ns["greet"].__name__ == "greet" and ns["greet"].__doc__ == "Say hello."
    assert replace_once(ns, "greet", polite) is True  # another fix still applies on top
    assert replace_once(ns, "greet", loud) is False
    assert ns["greet"]("bob") == "please, loud hello bob"


def test_methods_static_methods_and_inherited_ones():
    class Base:
        def hello(self):
            return "hi"

        @staticmethod
        def options(parser):
            return [parser]

    class Child(Base):
        pass

    def with_flag(setter):
        return lambda parser: setter(parser) + ["--vem"]

    assert replace_once(Child, "hello", loud) and replace_once(Child, "options", with_flag)
    assert Child().hello() == "loud hi" and Base().hello() == "hi"  # replaced on Child only
    assert isinstance(Child.__dict__["options"], staticmethod)
    assert Child.options("p") == Child().options("p") == ["p", "--vem"]
    replace_once(Base, "hello", polite)
    assert not replace_once(Child, "hello", loud)  # still Child's own replacement
    assert Child().hello() == "loud hi"


def test_a_replacement_already_made_on_a_base_class_counts():
    class Base:
        def hello(self):
            return "hi"

    class Child(Base):
        pass

    assert replace_once(Base, "hello", loud)
    assert not replace_once(Child, "hello", loud)
    assert "hello" not in Child.__dict__ and Child().hello() == "loud hi"


def test_module_attributes_and_factories_with_arguments():
    import types
    module = types.ModuleType("m")
    module.f = lambda: "x"

    def prefixed(prefix, original):
        return lambda: prefix + original()

    assert replace_once(module, "f", functools.partial(prefixed, "a"))
    assert not replace_once(module, "f", functools.partial(prefixed, "b"))  # same factory
    assert module.f() == "ax"


def test_wrap_once_recognises_its_own_products():
    calls = []

    @wrap_once
    def counted(original):
        calls.append(original)
        return lambda: original() + 1

    once = counted(lambda: 1)
    assert counted(once) is once and calls == [calls[0]]
    ns = {"f": once}
    assert not replace_once(ns, "f", counted) and ns["f"]() == 2


def test_tell_prints_prefixed_and_appends_to_the_log(tmp_path, capsys):
    log = tmp_path / "log.txt"
    compat.tell("FID is skipped", log)
    compat.tell("said once", once=True)
    compat.tell("said once", once=True)
    assert capsys.readouterr().out == "vem-plugins: FID is skipped\nvem-plugins: said once\n"
    assert log.read_text() == "vem-plugins: FID is skipped\n"


def test_numpy_aliases_are_the_builtins(monkeypatch):
    import sys
    import types

    import numpy as np
    from vem_plugins.authoring.compat import numpy_aliases

    upstream = types.ModuleType("metric.mIoU_score")
    upstream.np = np
    monkeypatch.setitem(sys.modules, "metric.mIoU_score", upstream)
    numpy_aliases("metric.mIoU_score", "metric.not_loaded")
    np_ = upstream.np
    assert np_.array([1.7], dtype=np_.int).dtype == np.array([1], dtype=int).dtype
    assert np_.float is float and np_.bool is bool and np_.zeros is np.zeros
    assert "metric.not_loaded" not in sys.modules
