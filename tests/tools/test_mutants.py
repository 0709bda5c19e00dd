"""The mutation check's list stays in step with the code (running it is `python -m mdmlib.tools.mutants`)."""
import re

import pytest

from mdmlib.tools.mutants import MUTANTS, ROOT


def test_mutant_names_are_unique():
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_snippet_occurs_exactly_once(mutant):
    text = (ROOT / mutant.path).read_text()
    assert text.count(mutant.snippet) == 1, f"{mutant.path} holds the snippet {text.count(mutant.snippet)} times"
    assert mutant.replacement != mutant.snippet
    # a mutant is a bug the tests must find, not a syntax error any import would find
    compile(text.replace(mutant.snippet, mutant.replacement), mutant.path, "exec")


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_named_tests_exist(mutant):
    assert mutant.tests, "a mutant must name the tests that catch it"
    for node in mutant.tests:
        path, _, rest = node.partition("::")
        function = re.split(r"\[", rest)[0]
        source = (ROOT / path).read_text()
        assert function and re.search(rf"^def {re.escape(function)}\(", source, re.M), f"{node}: no test {function!r} in {path}"
        params = re.search(r"\[(.*)\]$", rest)
        if params:  # a parametrised id names values the test's parameters take
            assert all(part in source for part in params.group(1).split("-")), f"{node}: no such parameter values in {path}"
