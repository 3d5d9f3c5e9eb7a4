"""The names of the algorithms, read without importing them (so without torch).

An algorithm is one module of the `algorithms` package, registered under that module's name
(`suite.algorithm.register` refuses any other name), so the names are the package's module names.
"""

from __future__ import annotations

import importlib.util
import pkgutil

PACKAGE = "algorithms"


def algorithm_names() -> list[str]:
    """The registered algorithms' names, sorted, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        return []
    return sorted(m.name for m in pkgutil.iter_modules(locations) if not m.name.startswith("_"))


def module_of(name: str) -> str:
    """The module that holds algorithm `name`."""
    return f"{PACKAGE}.{name}"
