"""Third-party adapter packages: ``vem-plugins new-adapter`` output installs with pip and is
listed; plugins written for another vem-plugins version are skipped with a warning naming the
hook. Through the console script, as users run it."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import toy_upstream as toy
from toy_upstream import cli

PIN = "0123456789abcdef0123456789abcdef01234567"


def test_new_adapter_package_installs_with_pip_and_is_listed(tmp_path):
    pkg = tmp_path / "pkg"
    proc = cli("new-adapter", "my-gan", "--url", "https://example.org/my-gan.git",
               "--commit", PIN.upper(), "--dir", pkg)
    assert proc.returncode == 0, proc.stderr
    files = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.is_file())
    assert files == ["README.md", "conftest.py", "pyproject.toml", "tests/test_vem_my_gan.py",
                     "vem_my_gan/__init__.py", "vem_my_gan/adapter.py", "vem_my_gan/glue.py",
                     "vem_my_gan/patches/file_hashes.json"]
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site), str(pkg)],
                   check=True, capture_output=True)
    env = toy.env_with(site, XDG_STATE_HOME=tmp_path / "state")
    listed = {row["name"]: row for row in json.loads(cli("list", "--json", env=env).stdout)}
    assert listed["my-gan"]["url"] == "https://example.org/my-gan.git"
    assert listed["my-gan"]["commit"] == PIN  # normalised to lower case
    assert {"omgd", "gan-compression", "cat", "gcc", "cagc"} <= listed.keys()
    # without the package nothing changes
    plain = json.loads(cli("list", "--json", env=toy.env_with(XDG_STATE_HOME=tmp_path)).stdout)
    assert "my-gan" not in {row["name"] for row in plain}
    # the generated test runs with the harness and says what the author must add
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(pkg / "tests")], cwd=pkg, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1 and "2 failed" in proc.stdout
    assert "adapter my-gan declares no smoke recipe (Adapter.smoke)" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["My_GAN", "--url", "u", "--commit", PIN], "use lower-case letters"),
    (["my-gan", "--url", "u", "--commit", "0123abc"], "full 40-character commit"),
    (["my-gan", "--url", " ", "--commit", PIN], "--url"),
    (["omgd", "--url", "u", "--commit", PIN], "already registered"),
])
def test_new_adapter_refuses_bad_input_and_writes_nothing(tmp_path, args, message):
    proc = cli("new-adapter", *args, "--dir", tmp_path / "pkg")
    assert proc.returncode == 1 and message in proc.stderr
    assert not (tmp_path / "pkg").exists()


def test_new_adapter_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mine.txt").write_text("keep me")
    proc = cli("new-adapter", "my-gan", "--url", "u", "--commit", PIN, "--dir", tmp_path / "pkg")
    assert proc.returncode == 1 and "not empty" in proc.stderr
    assert [p.name for p in (tmp_path / "pkg").iterdir()] == ["mine.txt"]


PLUGINS = {
    "newer_plugin": '''
        from vem_plugins import hookimpl
        from vem_plugins.authoring.adapter import Adapter

        @hookimpl
        def register_adapters(register):
            register(Adapter(name="toy-newer", url="u", commit="1" * 40))

        @hookimpl
        def estimator_schedule(step):  # a hook of some later version
            return 1.0
    ''',
    "optional_plugin": '''
        from vem_plugins import hookimpl
        from vem_plugins.authoring.adapter import Adapter

        @hookimpl
        def register_adapters(register):
            register(Adapter(name="toy-optional", url="u", commit="2" * 40))

        @hookimpl(optionalhook=True)
        def estimator_schedule(step):
            return 1.0
    ''',
    "extra_arg_plugin": '''
        from vem_plugins import hookimpl

        @hookimpl
        def student_loss(teacher, student, real, context, discriminator):
            return None
    ''',
    "broken_plugin": '''
        import a_module_nobody_has
    ''',
}


@pytest.fixture
def skewed(tmp_path):
    for name, text in PLUGINS.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    info = tmp_path / "skewed-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: skewed\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[vem_plugins]\n" + "".join(f"{n.split('_plugin')[0]} = {n}\n" for n in PLUGINS))
    return toy.env_with(tmp_path, XDG_STATE_HOME=tmp_path / "state")


def test_plugins_for_another_version_are_skipped_with_a_warning_naming_the_hook(skewed):
    proc = cli("list", env=skewed)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "PluginSkipped" in line]
    assert len(warnings) == 3, proc.stderr
    newer, extra, broken = (next(w for w in warnings if f"plugin '{n}'" in w)
                            for n in ("newer", "extra_arg", "broken"))
    assert "hook(s) 'estimator_schedule', which this version does not have" in newer
    assert "from skewed 1.0" in newer and "optionalhook=True" in newer
    assert "'student_loss'" in extra and "discriminator" in extra
    assert "a_module_nobody_has" in broken
    names = proc.stdout.split()
    assert "toy-optional" in names and "toy-newer" not in names and "omgd" in names


def test_the_runtime_runs_beside_skipped_plugins(skewed):
    code = ("import warnings, torch; from vem_plugins.method import options; "
            "from vem_plugins.method.runtime import Runtime\n"
            "opt = options.defaults(); opt.vem, opt.ebm_width, opt.ebm_blocks = True, 2, 1\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always'); rt = Runtime(opt, 'cpu')\n"
            "s = torch.rand(1, 3, 8, 8) * 2 - 1; rt.update(student=s, teacher=s)\n"
            "print(sorted(rt.log_values()), len(seen))")
    proc = subprocess.run([sys.executable, "-c", code], env=skewed, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].split("]")[0] + "]" == "['ebm_loss', 'energy_gap', 'mi', 'mi_skipped']"
    assert proc.stdout.split()[-1] == "3"


def test_disable_autoload_loads_only_the_builtins(skewed):
    proc = cli("list", env=dict(skewed, VEM_PLUGINS_DISABLE_AUTOLOAD="1"))
    assert proc.returncode == 0 and "PluginSkipped" not in proc.stderr
    names = proc.stdout.split()
    assert "toy-optional" not in names and "omgd" in names
