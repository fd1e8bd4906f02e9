"""``vem-plugins try`` without an upstream: its refusals, and a run that fails. The real thing,
OMGD's ``distill.py`` trained twice and reported, is in ``tests/upstream/test_try.py``.
"""
from __future__ import annotations

from vem_plugins.commands.cli import main


def test_try_without_a_recipe(capsys):
    assert main(["try", "cat"]) == 1
    assert "has no `try` recipe" in capsys.readouterr().err
    assert main(["try", "omgd", "--epochs", "0"]) == 1
    assert "--epochs: must be >= 1" in capsys.readouterr().err


def test_try_reports_a_failed_run(tmp_path, monkeypatch):
    """A run that dies after starting its record: the other still finishes, the report says
    what is missing, and the tail of the failed run's output is shown."""
    import types

    from vem_plugins.commands import tryout
    from vem_plugins.authoring.adapter import Tryout

    script = ("import argparse, sys; from vem_plugins.commands import record; "
              "r = record.RunRecord(sys.argv[1]); vem = '--vem' in sys.argv; "
              "r.start('fake', argparse.Namespace(vem=vem), vem); "
              "print('boom' if vem else 'fine'); sys.exit(3 if vem else 0)")
    adapter = types.SimpleNamespace(name="fake", requirements=(), tryout=Tryout(
        command=("{python}", "-c", script, "{out}"), vem=("--vem",), batch_size=2, size=16))
    monkeypatch.setattr(tryout.installer, "install", lambda *a, **k: types.SimpleNamespace(
        summary=lambda show: "fake is installed"))
    said = []
    path, runs, processes = tryout.run(adapter, tmp_path, tmp_path / "out", epochs=1, pairs=4,
                                       held_out=2, say=said.append)
    assert [p.process.returncode for p in processes] == [3, 0]
    assert any("with-vem failed (exit status 3)" in s and "boom" in s for s in said)
    assert path.is_file() and all("scalars.jsonl is missing" in "\n".join(r.problems)
                                  for r in runs)
    assert "Missing in with-vem" in path.read_text()
