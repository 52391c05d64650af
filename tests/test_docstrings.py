"""The examples in lit_kd's docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import lit_kd

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(lit_kd.__path__, prefix="lit_kd.") if not name.endswith("__main__")
)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name: str) -> None:
    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
