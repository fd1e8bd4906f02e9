"""Makes ``vem_dmad`` importable when the tests run from a source tree that is not installed."""
