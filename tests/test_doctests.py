"""The examples in dsc_utils' docstrings run, and print what they say (one test per docstring)."""
from __future__ import annotations

import doctest

import pytest

import dsc_utils as du

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
EXAMPLES = [test for test in doctest.DocTestFinder().find(du) if test.examples]


def needs_keras(test: doctest.DocTest) -> bool:
    return any("import_keras()" in example.source for example in test.examples)


# The examples that import Keras run in test_keras.py: its worker imports Keras anyway (seconds).
TESTS = [test for test in EXAMPLES if not needs_keras(test)]


def test_the_public_functions_have_examples():
    assert len(EXAMPLES) >= 30
    assert {test.name for test in EXAMPLES if needs_keras(test)} == {
        "dsc_utils.import_keras", "dsc_utils.from_keras"}  # the ones test_keras.py runs


@pytest.mark.parametrize("test", TESTS, ids=[test.name.removeprefix("dsc_utils.") for test in TESTS])
def test_docstring_example(test):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=lambda text: pytest.fail(text, pytrace=False))
    assert runner.failures == 0
