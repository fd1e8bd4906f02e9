"""Adapters written against vem-plugins 0.2 keep working: every module that moved imports under
its old name as the very module that replaced it, with one FutureWarning naming the new name."""
import subprocess
import sys

from vem_plugins import MOVED



def test_old_module_names_are_the_new_modules_and_warn_once_naming_them():
    code = ("import importlib, warnings\n"
            "from vem_plugins import MOVED\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    for old, new in MOVED.items():\n"
            "        assert importlib.import_module(old) is importlib.import_module(new), old\n"
            "        importlib.import_module(old)  # a second import warns no more\n"
            "for w in seen:\n"
            "    print(w.category.__name__, w.message)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sorted(lines) == sorted(f"FutureWarning {old} is deprecated: import {new} instead"
                                   for old, new in MOVED.items())


def test_a_class_from_an_old_name_is_the_class_the_library_checks():
    code = ("import warnings; warnings.simplefilter('ignore')\n"
            "from vem_plugins.estimators.base import Estimator as Old\n"
            "from vem_plugins.method.estimators.vem import VEM\n"
            "from vem_plugins.runtime import Runtime\n"
            "from vem_plugins.method.runtime import Runtime as New\n"
            "assert issubclass(VEM, Old) and Runtime is New; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "ok", proc.stderr
