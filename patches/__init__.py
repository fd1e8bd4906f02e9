"""Patch series, one folder per built-in adapter (package data of ``vem_plugins.patches``)."""
