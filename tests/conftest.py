"""The two tiers: ``tests/`` holds the fast tier (no upstream repository, none of the
``[upstream]`` extras needed: a test that uses one skips with the reason), ``tests/upstream/`` the
tests that run upstream code (see its ``conftest.py``). ``python -m pytest -m "not upstream and
not faults"`` runs the fast tier alone (``faults``: the minutes-long sweep of test_faults.py).

The helper modules the test files import (``helpers``, ``toy_upstream``, ``browser``) get the
same assert rewriting as test files, so a failed assert in them shows its values.
"""
import pytest

pytest.register_assert_rewrite("helpers", "toy_upstream", "browser")
