"""The upstream tier (see conftest.py). A package so that its test files may share a name with
the fast tier's (tests/upstream/test_omgd.py beside tests/test_omgd.py) in pytest's default
import mode: they import as ``upstream.test_omgd`` and ``test_omgd``."""
