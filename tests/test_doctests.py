"""The examples in dsc_utils' docstrings run, and print what they say (one test per docstring)."""
from __future__ import annotations

import doctest

import pytest

import dsc_utils as du

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
TESTS = [test for test in doctest.DocTestFinder().find(du) if test.examples]


def test_the_public_functions_have_examples():
    assert len(TESTS) >= 30


@pytest.mark.parametrize("test", TESTS, ids=[test.name.removeprefix("dsc_utils.") for test in TESTS])
def test_docstring_example(test):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=lambda text: pytest.fail(text, pytrace=False))
    assert runner.failures == 0
