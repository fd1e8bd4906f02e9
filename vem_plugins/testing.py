"""Test helpers for vem-plugins and for adapter authors (usable as a pytest plugin).

Tests that need an upstream repository probe it with ``git ls-remote`` (which honours git's
``url.<base>.insteadOf`` rewriting, so a local mirror counts) and skip with the reason when it
cannot be reached.
"""
from __future__ import annotations

import functools
import subprocess

import pytest


@functools.cache
def unreachable(url: str) -> str | None:
    """Why ``url`` cannot be listed with ``git ls-remote`` (None when it can)."""
    try:
        proc = subprocess.run(["git", "ls-remote", "--heads", url], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"git ls-remote {url} failed: {exc}"
    if proc.returncode:
        err = proc.stderr.strip().splitlines()
        return f"upstream {url} is unreachable ({err[-1] if err else proc.returncode}); fetch a " \
               f"mirror and set git's url.<mirror>.insteadOf {url}"
    return None


def require_upstream(url: str) -> None:
    """Skip the calling test, with the reason, when ``url`` is unreachable."""
    reason = unreachable(url)
    if reason:
        pytest.skip(reason)
