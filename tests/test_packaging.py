"""The wheel carries the adapters and the patches, and patches carry no upstream text."""
import pathlib
import re
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).parents[1]
HUNK = re.compile(r"^@@ -\d+(,0)? \+\d+(,\d+)? @@")


def patch_files():
    return sorted((ROOT / "patches").glob("*/*.patch"))


def test_patches_are_zero_context_and_insertion_only():
    """No context or removed line (upstream text) in any patch; every hunk inserts only."""
    upstream_lines = []
    for path in patch_files():
        for n, line in enumerate(open(path, newline="").read().splitlines(), 1):
            if line.startswith("@@"):
                assert HUNK.match(line), f"{path.name}:{n} is not a zero-context insertion: {line}"
            elif line.startswith((" ", "-")) and not line.startswith("--- "):
                upstream_lines.append(f"{path.relative_to(ROOT)}:{n}")
            elif line == "":
                upstream_lines.append(f"{path.relative_to(ROOT)}:{n} (empty context line)")
    assert upstream_lines == []


def test_every_declared_patch_exists_and_every_patch_is_declared():
    from vem_plugins.plugins import adapters
    declared = set()
    for adapter in adapters().values():
        for patch in adapter.patches:
            assert patch.is_file(), patch
            declared.add(pathlib.Path(str(patch)).resolve())
    assert {p.resolve() for p in patch_files()} <= declared


def test_non_editable_wheel_ships_adapters_and_patches(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("vem_plugins-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for part in ("__init__", "adapter", "glue", "compat"):
        assert f"vem_plugins/adapters/omgd/{part}.py" in names
    assert not any(n.startswith("adapters/") for n in names)  # no top-level `adapters` package
    for path in [*patch_files(), *ROOT.glob("patches/*/file_hashes.json")]:
        assert f"vem_plugins/patches/{path.parent.name}/{path.name}" in names
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    # the built-ins are found through the wheel's entry points, with their patches and hashes
    code = ("import vem_plugins; from vem_plugins.plugins import adapters; "
            "assert vem_plugins.__file__.startswith(%r); a = adapters(); "
            "assert sorted(a) == ['cagc', 'cat', 'gan-compression', 'gcc', 'omgd'], a; "
            "assert all(p.is_file() for x in a.values() for p in x.patches); "
            "assert all(x.file_hashes for x in a.values()); print('ok')" % str(target))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "ok", out.stderr
