"""The installer under hostile conditions: damaged or missing locks, a second command at the
same time, immutable files, full disks, symlinks and mount points, nested repositories under
``--remove``. Each ends in one line that says why, a state ``status`` names truthfully, and
advice that works. (Interruptions at every git step: tests/test_faults.py.)"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import git, immutable, small_disk
from test_installer import (TRAIN, insertion, pristine_bytes, sha, snapshot,  # noqa: F401
                            toy, upstream, with_patch)
from vem_plugins.commands import cli
from vem_plugins.errors import InstallError
from vem_plugins.install import checkout as installer, transaction


@pytest.fixture
def installed(toy, tmp_path):
    dest = tmp_path / "toy"
    installer.install(toy, dest, progress=False)
    return dest


def files(dest) -> dict:
    """The checkout's files, but for the time its lock was written."""
    return {path: re.sub(rb'"time": "[^"]*"', b"", data) for path, data in snapshot(dest).items()}


# --- damaged and missing locks -------------------------------------------------------------

@pytest.mark.parametrize("damage", [
    lambda lock: lock.write_text(lock.read_text()[:40]),  # truncated
    lambda lock: lock.write_text(json.dumps({**json.loads(lock.read_text()),
                                             "installed": "1" * 40})),  # no such commit
    lambda lock: lock.write_text(json.dumps({**json.loads(lock.read_text()),
                                             "commit": 7, "patches": "x"})),  # wrong types
    lambda lock: lock.write_text(json.dumps({**json.loads(lock.read_text()),
                                             "adapter": ["toy"]})),
    lambda lock: lock.write_text("[]"),
    lambda lock: lock.unlink(),
], ids=["truncated", "unknown-commit", "wrong-types", "adapter-a-list", "not-an-object",
        "deleted"])
def test_a_damaged_or_missing_lock_is_rebuilt_from_the_checkout(toy, installed, damage):
    good = json.loads((installed / installer.LOCK).read_text())
    damage(installed / installer.LOCK)
    st = installer.status(toy, installed)
    assert st.state == "installed" and st.patches == [("01-compat.patch", "applied"),
                                                      ("02-vem.patch", "applied")]
    assert len(st.notes) == 1 and "rebuilt it from the checkout" in st.notes[0]
    lock = json.loads((installed / installer.LOCK).read_text())
    assert {k: lock[k] for k in ("commit", "installed", "patches", "added_files")} == \
        {k: good[k] for k in ("commit", "installed", "patches", "added_files")}
    assert installer.install(toy, installed, progress=False).action == "unchanged"
    assert installer.uninstall(toy, installed).action == "reverted"
    assert snapshot(installed) == pristine_bytes(installed, toy.commit)


def test_without_lock_or_ref_a_patched_tree_is_still_known_as_patched(toy, installed):
    (installed / installer.LOCK).unlink()
    git(installed, "update-ref", "-d", transaction.REF)
    st = installer.status(toy, installed)
    assert st.state == "installed" and "current patches" in st.notes[0]
    result = installer.uninstall(toy, installed)
    assert result.action == "reverted"
    assert snapshot(installed) == pristine_bytes(installed, toy.commit)


def test_a_lock_damaged_after_an_upgrade_is_rebuilt_from_the_recorded_state(toy, installed,
                                                                              tmp_path):
    old = with_patch(toy, tmp_path, "02-vem.patch", insertion("models/net.py", (5, ["# v0"])))
    installer.install(old, installed, progress=False)  # the tree holds patches toy lacks
    (installed / installer.LOCK).write_text("{")
    st = installer.status(toy, installed)
    assert st.state == "outdated" and not st.edited
    assert all("cannot be told" in state for _, state in st.patches)
    assert installer.install(toy, installed, progress=False).action == "upgraded"
    assert installer.status(toy, installed).state == "installed"


def test_a_rebuilt_lock_of_a_cli_checkout_advises_what_works(toy, installed, capsys,
                                                             monkeypatch):
    monkeypatch.setattr(cli.plugins, "adapters", lambda: {"toy": toy})
    (installed / installer.LOCK).write_text('{"adapter": 1')
    assert cli.main(["status", "--dir", str(installed)]) == 0  # the owner, told by HEAD
    out, err = capsys.readouterr()
    assert out.startswith("toy: installed") and "rebuilt" in err
    git(installed, "checkout", "-q", "--detach", "HEAD~0")  # (still the pin)
    (installed / installer.LOCK).write_text('{"adapter": 1')
    monkeypatch.setattr(cli.plugins, "adapters", lambda: {})
    assert cli.main(["status", "--dir", str(installed)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"status NAME --dir {installed}" in err


# --- one command at a time; the registry -----------------------------------------------------

def test_a_second_command_on_a_checkout_says_which_process_holds_it(toy, installed):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from vem_plugins.install.exclusive import exclusive\n"
         f"with exclusive({str(installed.parent / '.toy.vem-plugins-lock')!r}, 'x'):\n"
         "    print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(InstallError, match=rf"another vem-plugins command \(PID "
                                               rf"{holder.pid}\) is working on {installed}"):
            installer.uninstall(toy, installed)
    finally:
        holder.kill()
        holder.wait()
    assert installer.uninstall(toy, installed).action == "reverted"  # the kernel freed it
    assert not (installed.parent / ".toy.vem-plugins-lock").exists()


def test_concurrent_installs_keep_every_entry_of_the_registry(tmp_path):
    code = ("import sys; from pathlib import Path; from vem_plugins.commands import places; "
            "places.remember('toy', Path(sys.argv[1]))")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"d{i}")], env=env)
             for i in range(12)]
    assert all(p.wait() == 0 for p in procs)
    data = json.loads((tmp_path / "state" / "vem-plugins" / "checkouts.json").read_text())
    assert sorted(data["toy"]) == sorted(str(tmp_path / f"d{i}") for i in range(12))


# --- --remove keeps what vem-plugins did not make --------------------------------------------

def test_remove_moves_nested_repositories_whole_with_their_history(toy, installed):
    exp = installed / "myexp"
    exp.mkdir()
    git(exp, "init", "-q")
    (exp / "model.py").write_text("committed\n")
    git(exp, "add", "model.py")
    git(exp, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", "my work")
    (exp / "wip.txt").write_text("uncommitted\n")
    with pytest.raises(InstallError, match=r"untracked myexp/ \(a git repository\).*--force"):
        installer.uninstall(toy, installed, remove=True)
    result = installer.uninstall(toy, installed, remove=True, force=True)
    assert not installed.exists() and result.backup is None
    kept = result.moved_to / "myexp"
    assert git(kept, "log", "-1", "--format=%s").strip() == "my work"
    assert (kept / "wip.txt").read_text() == "uncommitted\n"
    assert f"moved, whole, to {result.moved_to}" in result.summary()


def test_remove_that_cannot_move_a_file_aside_removes_nothing(toy, installed):
    (installed / "logs").mkdir()
    (installed / "logs" / "run.txt").write_text("mine\n")
    (installed / "notes.txt").write_text("notes\n")
    before = snapshot(installed)
    with immutable(installed / "notes.txt"), \
            pytest.raises(InstallError, match=r"cannot move your files out of .*nothing was "
                                              r"removed"):
        installer.uninstall(toy, installed, remove=True, force=True)
    assert snapshot(installed) == before
    assert not list(installed.parent.glob("toy.kept-*"))


# --- read-only, immutable and full -----------------------------------------------------------

def test_an_immutable_file_stops_an_upgrade_with_the_tree_as_it_was(toy, installed, tmp_path):
    before = snapshot(installed)
    new = with_patch(toy, tmp_path, "02-vem.patch", insertion("models/net.py", (5, ["# v2"])))
    with immutable(installed / "models"), \
            pytest.raises(InstallError, match=r"is as it was before$") as exc:
        installer.install(new, installed, progress=False)
    assert len(str(exc.value).splitlines()) == 1 and "net.py" in str(exc.value)
    assert snapshot(installed) == before
    assert installer.status(new, installed).state == "outdated"
    assert installer.install(new, installed, progress=False).action == "upgraded"


@pytest.mark.parametrize("op", ["upgrade", "new pin", "uninstall"])
def test_an_immutable_file_anywhere_in_a_change_leaves_the_old_state(toy, upstream, installed,
                                                                      tmp_path, op):
    """Each file the change rewrites, made immutable in turn: one line, the tree as it was,
    status truthful, and once the file is writable again the same command finishes."""
    new = {"upgrade": with_patch(toy, tmp_path, "02-vem.patch",
                                 insertion("models/net.py", (5, ["# v2"]))),
           "new pin": dataclasses.replace(toy, commit=upstream[2], file_hashes={
               **toy.file_hashes, "train.py": sha(TRAIN + "line 11\n")}),
           "uninstall": toy}[op]

    def change(dest):
        if op == "uninstall":
            return installer.uninstall(toy, dest)
        return installer.install(new, dest, progress=False)

    before, state = files(installed), installer.status(new, installed).state
    reference = tmp_path / "reference" / "toy"
    shutil.copytree(installed, reference, symlinks=True)
    change(reference)
    after = files(reference)
    rewritten = sorted(p for p in {*before, *after} if before.get(p) != after.get(p))
    assert len(rewritten) >= 2
    for i, path in enumerate(rewritten):
        dest = tmp_path / f"case-{i}" / "toy"
        shutil.copytree(installed, dest, symlinks=True)
        target = dest / path if (dest / path).exists() else (dest / path).parent
        with immutable(target), pytest.raises(InstallError) as exc:
            change(dest)
        assert len(str(exc.value).splitlines()) == 1
        if path == installer.LOCK:  # not even the old state can be recorded: says what to do
            assert str(exc.value).endswith(f"fix that, then any vem-plugins command on {dest} "
                                           "finishes it")
            assert installer.status(new, dest).notes[0].startswith("finished an interrupted")
        else:
            assert str(exc.value).endswith("is as it was before")
            assert files(dest) == before and installer.status(new, dest).state == state
            change(dest)
        assert files(dest) == after


def test_a_forced_repair_that_fails_keeps_the_edit_and_names_its_backup(toy, installed):
    (installed / "train.py").write_text("my train\n")
    (installed / "models" / "net.py").write_text("my net\n")
    with immutable(installed / "models" / "net.py"), \
            pytest.raises(InstallError, match=r"your edits are saved in (\S+\.patch)") as exc:
        installer.install(toy, installed, force=True, progress=False)
    backup = Path(str(exc.value).rsplit(" ", 1)[1])
    assert "+my train" in backup.read_text() and "+my net" in backup.read_text()
    assert (installed / "train.py").read_text() == "my train\n"  # put back by the rollback
    assert installer.status(toy, installed).state == "edited"


def test_a_read_only_parent_is_one_line(toy, tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    with immutable(parent), pytest.raises(InstallError, match=r"^cannot lock .*: Operation not "
                                                                r"permitted: .*lock$"):
        installer.install(toy, parent / "toy", progress=False)
    with immutable(parent), pytest.raises(InstallError, match=r"cannot create .*Operation not"):
        installer.install(toy, parent / "deeper" / "toy", progress=False)


def test_symlinked_dir_is_refused_with_the_real_path(toy, installed, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(installed)
    for action in (lambda: installer.install(toy, link, progress=False),
                   lambda: installer.uninstall(toy, link, remove=True, force=True),
                   lambda: installer.status(toy, link)):
        with pytest.raises(InstallError, match=rf"is a symbolic link .*--dir {installed}$"):
            action()
    assert installed.is_dir() and link.is_symlink()


def test_mount_points_are_refused_in_one_line(toy, tmp_path):
    with small_disk(tmp_path / "mnt", "8m") as mnt:
        with pytest.raises(InstallError, match=rf"mount point.*--dir {mnt}/toy$"):
            installer.install(toy, mnt, progress=False)
        assert installer.install(toy, mnt / "toy", progress=False).action == "installed"


@pytest.mark.parametrize("size", ["24k", "48k", "96k", "160k"])
def test_a_full_disk_keeps_gits_reason_and_leaves_nothing(toy, tmp_path, size):
    with small_disk(tmp_path / "mnt", size) as mnt:
        try:
            installer.install(toy, mnt / "toy", progress=False)
        except InstallError as exc:
            message = str(exc)
            assert re.search("No space left on device|Out of diskspace", message)
            assert "does not apply" not in message
            assert len(message.splitlines()) == 1
            assert os.listdir(mnt) == []
        else:
            assert installer.status(toy, mnt / "toy").state == "installed"


def test_an_upgrade_on_a_full_disk_leaves_the_old_state(toy, tmp_path):
    with small_disk(tmp_path / "mnt", "2m") as mnt:
        dest = mnt / "toy"
        installer.install(toy, dest, progress=False)
        before = snapshot(dest)
        new = with_patch(toy, tmp_path, "02-vem.patch",
                         insertion("models/net.py", (5, ["# v2" * 20])))
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        with pytest.raises(InstallError, match="No space left on device|Out of diskspace") as exc:
            installer.install(new, dest, progress=False)
        assert len(str(exc.value).splitlines()) == 1
        assert snapshot(dest) == before and not transaction.pending(dest)
        filler.unlink()
        assert installer.install(new, dest, progress=False).action == "upgraded"


def test_a_bad_bundle_says_gits_reason(toy, tmp_path):
    bad = tmp_path / "bad.bundle"
    bad.write_text("not a bundle\n")
    with pytest.raises(InstallError, match=r"does not look like a v2 or v3 bundle") as exc:
        installer.install(toy, tmp_path / "toy", source=str(bad), progress=False)
    assert "repository exists" not in str(exc.value)


# --- an interrupted transaction, as the next command finds it --------------------------------

def test_the_next_command_finishes_a_half_switched_upgrade(toy, installed, tmp_path):
    """As after kill -9 half-way through writing the files (see tests/test_faults.py for every
    step): the journal is there, two files are new and the rest old."""
    new = with_patch(toy, tmp_path, "02-vem.patch", insertion("models/net.py", (5, ["# v2"])))
    lock = json.loads((installed / installer.LOCK).read_text())
    target = installer.patchset.build(installed, new, new.commit)
    tx = transaction.Transaction("upgrade", old=(toy.commit, lock["installed"]),
                                 new=(toy.commit, target), old_lock=lock,
                                 new_lock={**lock, "installed": target})
    transaction._write_journal(installed, tx)
    (installed / "models" / "net.py").write_bytes(git(installed, "show", f"{target}:models/net.py")
                                                  .encode())
    st = installer.status(new, installed)
    assert st.notes[0].startswith(f"finished an interrupted upgrade of {installed}")
    assert st.state == "outdated"  # the lock written is the one the journal held
    assert installer.install(new, installed, progress=False).action == "upgraded"
    assert installer.status(new, installed).state == "installed"


def test_stale_removal_is_finished_and_says_where_the_files_went(toy, installed, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    doomed = tmp_path / f".toy.removing-{dead.pid}"
    installed.rename(doomed)
    tx = transaction.Transaction("remove", old=(toy.commit,) * 2, new=(toy.commit,) * 2,
                                 old_lock=None, new_lock=None, kept=str(tmp_path / "toy.kept-1"),
                                 moved=["notes.txt"])
    transaction._write_journal(doomed, tx)
    result = installer.install(toy, installed, progress=False)
    assert result.action == "installed" and not doomed.exists()
    assert any(f"your files are in {tmp_path / 'toy.kept-1'}" in w for w in result.warnings)
