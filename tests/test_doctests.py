"""The examples in the docstrings of every module run as written (in a temporary folder)."""

import doctest
import importlib
import pkgutil

import pytest

import hessian
import particles
import simulations

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _examples(name):
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]


def _modules_with_examples():
    names = []
    for package in (particles, hessian, simulations):
        names.append(package.__name__)
        modules = pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        names += [info.name for info in modules if not info.name.endswith("__main__")]  # importing runs them
    return [name for name in sorted(names) if _examples(name)]


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner, report = doctest.DocTestRunner(optionflags=FLAGS), []
    for test in _examples(name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
