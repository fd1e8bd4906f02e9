"""Third-party adapter packages: ``vem-plugins new-adapter`` output installs with pip and is
listed, holds what it was given as data (never as code), and bad input is refused in one line;
plugins written for another vem-plugins version are skipped with a warning naming the hook.
Through the console script, as users run it, and through ``cli.main`` for the refusals."""
from __future__ import annotations

import ast
import importlib
import json
import keyword
import os
import subprocess
import sys
import textwrap
import tomllib

import pytest
import toy_upstream as toy
from toy_upstream import cli

from vem_plugins.commands import cli as cli_module
from vem_plugins.commands.scaffold import package_name, toml_string

PIN = "0123456789abcdef0123456789abcdef01234567"
URL = "https://example.org/my-gan.git"
QUOTED_URL = "https://example.org/my\"gan's\\\"\"\".git"
ATTACK = 'x" + __import__("os").system("touch PWNED") + "'


def test_new_adapter_package_installs_with_pip_and_is_listed(tmp_path):
    pkg = tmp_path / "pkg"
    proc = cli("new-adapter", "my-gan", "--url", QUOTED_URL, "--commit", PIN.upper(),
               "--dir", pkg)
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
    assert listed["my-gan"]["url"] == QUOTED_URL
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


@pytest.fixture
def import_adapter(monkeypatch):
    """Import a generated package's ``vem_my_gan.adapter`` from its folder; forgotten after."""
    def load(pkg):
        monkeypatch.syspath_prepend(str(pkg))
        return importlib.import_module("vem_my_gan.adapter")
    yield load
    for name in [n for n in sys.modules if n.split(".")[0] == "vem_my_gan"]:
        del sys.modules[name]


def new_adapter(*args, name="my-gan", commit=PIN):
    """``vem-plugins new-adapter NAME --commit SHA ARGS`` in this process; the exit status."""
    return cli_module.main(["new-adapter", name, "--commit", commit, *map(str, args)])


@pytest.mark.parametrize("url", [
    QUOTED_URL, "https://example.org/a\\b.git", 'git@example.org:x"""y\'\'\'z\\.git',
    'https://example.org/x"+__import__("os").system("touch${IFS}PWNED")+".git',
    "https://example.org/x'+__import__('os').system('touch${IFS}PWNED')+'.git",
    "https://example.org/x\"\"\"+__import__('os').system('touch${IFS}PWNED')+\"\"\".git",
    "local", 'up"str\'eam\\"""', ATTACK,  # existing folders (created below)
])
def test_the_url_is_written_as_data_and_read_back_unchanged(tmp_path, monkeypatch,
                                                             import_adapter, url):
    monkeypatch.chdir(tmp_path)
    if "://" not in url and "@" not in url:
        (tmp_path / url).mkdir()
    assert new_adapter("--url", url, "--dir", "pkg", commit=PIN.upper()) == 0
    pkg = tmp_path / "pkg"
    for path in pkg.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    adapter = import_adapter(pkg)
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*"))
    declared = adapter.ADAPTER
    assert (declared.name, declared.url, declared.commit) == ("my-gan", url, PIN)
    module = ast.parse((pkg / "vem_my_gan" / "adapter.py").read_text())
    assert ast.get_docstring(module).startswith("vem-plugins adapter my-gan:")
    project = tomllib.loads((pkg / "pyproject.toml").read_text())
    assert project["project"]["name"] == "vem-my-gan"
    assert project["project"]["description"] == f"vem-plugins adapter: VEM distillation for {url}"
    assert project["project"]["entry-points"]["vem_plugins"] == {"my-gan": "vem_my_gan.adapter"}
    assert project["tool"]["setuptools"]["packages"] == ["vem_my_gan"]


def test_toml_strings_hold_every_character():
    text = "".join(chr(i) for i in range(0x110000) if not 0xD800 <= i < 0xE000)
    assert tomllib.loads(f"a = {toml_string(text)}")["a"] == text


@pytest.mark.parametrize("name", ["a", "if", "class", "none", "my-gan", "my_gan2", "a-b_c"])
def test_accepted_names_make_importable_packages(tmp_path, name):
    assert new_adapter("--url", URL, "--dir", tmp_path / "pkg", name=name) == 0
    assert package_name(name).isidentifier() and not keyword.iskeyword(package_name(name))
    assert (tmp_path / "pkg" / package_name(name) / "adapter.py").is_file()


def refused(capsys, tmp_path, *args, **kw):
    """The one-line error of ``new-adapter ARGS``, checking it wrote nothing."""
    assert new_adapter(*args, **kw) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("vem-plugins: error: ")
    assert not (tmp_path / "pkg").exists()
    return err


@pytest.mark.parametrize("name", ["My_GAN", "1gan", "my--gan", "my-gan-", "_gan", "my.gan",
                                  "my gan", 'a"b', "a\nb", "gän"])
def test_bad_names_are_refused_in_one_line(capsys, tmp_path, name):
    err = refused(capsys, tmp_path, "--url", URL, "--dir", tmp_path / "pkg", name=name)
    assert "use lower-case letters and digits, joined by single dashes or underscores" in err


@pytest.mark.parametrize("commit", ["0123abc", PIN + "0", "g" * 40, PIN + "\n", " " + PIN])
def test_bad_commits_are_refused_in_one_line(capsys, tmp_path, commit):
    err = refused(capsys, tmp_path, "--url", URL, "--dir", tmp_path / "pkg", commit=commit)
    assert "full 40-character hex commit SHA" in err


@pytest.mark.parametrize("url, message", [
    (" ", "give the upstream repository's git URL"),
    ("u", "give a git URL"),
    ("ftp://example.org/x.git", "give a git URL"),
    ("https://example.org", "give a git URL"),
    ("javascript:alert(1)", "give a git URL"),
    (ATTACK, "give a git URL"),  # not an existing path here
    ("https://example.org/a\nb.git", "control characters"),
    ("https://example.org/a\rb.git", "control characters"),
    ("https://example.org/a\x00b.git", "control characters"),
    ("https://example.org/a\u2028b.git", "control characters"),
])
def test_bad_urls_are_refused_in_one_line(capsys, tmp_path, monkeypatch, url, message):
    monkeypatch.chdir(tmp_path)
    assert message in refused(capsys, tmp_path, "--url", url, "--dir", tmp_path / "pkg")


def test_a_registered_name_is_refused(capsys, tmp_path):
    err = refused(capsys, tmp_path, "--url", URL, "--dir", tmp_path / "pkg", name="omgd")
    assert "already registered" in err


def test_a_non_empty_folder_or_a_file_is_refused_and_kept(capsys, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mine.txt").write_text("keep me")
    (tmp_path / "file").write_text("keep me")
    for dest in (tmp_path / "pkg", tmp_path / "file"):
        assert new_adapter("--url", URL, "--dir", dest) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "exists and is not an empty folder" in err
    assert [p.name for p in (tmp_path / "pkg").iterdir()] == ["mine.txt"]
    assert (tmp_path / "file").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    assert new_adapter("--url", URL, "--dir", tmp_path / "empty") == 0  # an empty folder is fine


def test_a_folder_that_cannot_be_written_is_refused_in_one_line(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    assert new_adapter("--url", URL, "--dir", tmp_path / "file" / "pkg") == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "cannot write the package there (Not a directory)" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_a_read_only_parent_is_refused_in_one_line(capsys, tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    assert new_adapter("--url", URL, "--dir", tmp_path / "ro" / "pkg") == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "cannot write the package there (Permission denied)" in err


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
