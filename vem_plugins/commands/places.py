"""Where things are, as every command names them: adapters by name, the checkouts an adapter
is installed in, and paths shown relative to the current directory.

Checkouts are found in ``third_party/NAME`` under the current directory and in the registry
``$XDG_STATE_HOME/vem-plugins/checkouts.json``, where ``install`` remembers every ``--dir`` so
that ``list``, ``status`` and the ``data`` commands find those too.
"""
from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

from vem_plugins import plugins
from vem_plugins.errors import InstallError, UsageError
from vem_plugins.install.exclusive import exclusive
from vem_plugins.install.transaction import write_durably


def adapter(name):
    """The registered adapter ``name``; an unknown name is refused with close matches."""
    adapters = plugins.adapters()
    if name in adapters:
        return adapters[name]
    close = difflib.get_close_matches(name, adapters, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UsageError(f"unknown adapter {name!r}; {hint}(known: {', '.join(sorted(adapters))})")


def default_dest(name) -> Path:
    return (Path("third_party") / name).absolute()


def show(path) -> str:
    """A path relative to the current directory when it is below it."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def registry() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "vem-plugins" / "checkouts.json"


def load_registry() -> dict:
    """adapter name -> the checkout folders remembered (anything malformed is dropped)."""
    try:
        data = json.loads(registry().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: [p for p in v if isinstance(p, str)] for k, v in data.items()
            if isinstance(v, list)}


def remember(name, dest: Path, keep=True):
    """Record (or forget) where an adapter was installed, under a lock and by an atomic
    replace, so that concurrent installs all keep their entries; a convenience, so failures to
    write are ignored."""
    path = registry()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(path.with_name(path.name + ".lock"), "the checkouts registry", wait=True):
            data = load_registry()
            places = [p for p in data.get(name, []) if p != str(dest)]
            data[name] = places + ([str(dest)] if keep else [])
            write_durably(path, json.dumps(data, indent=2) + "\n")
    except (OSError, InstallError):
        pass


def checkouts(name) -> list[Path]:
    """Existing directories where ``name`` may be installed."""
    places = [default_dest(name), *map(Path, load_registry().get(name, []))]
    return [p for p in dict.fromkeys(places) if p.exists()]
