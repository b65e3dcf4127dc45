"""Loaded by every kernel the tests start (tests/conftest.py points IPYTHONDIR here).

The book must run offline: no cell may download data, weights or fonts. This audit hook refuses any
socket connection or name lookup that leaves the machine, so a cell that tries fails the test run.
"""
import sys

sys.path.insert(0, __file__.rsplit("/ipython/", 1)[0])
from network_guard import install  # noqa: E402

install()
del sys.path[0]
