"""The fidelity tier's one dependency, keras (on its torch backend), or why it is absent.

CI must run the Keras oracle (CI=true there): a missing or too old keras fails the run,
so the oracle can never turn into a silent skip. Elsewhere the tier is skipped, and the
reason says how to install it.
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest

INSTALL = "pip install -e '.[fidelity]'"
# Conv2DTranspose 'same' crops as TensorFlow from 3.15 on
MIN_VERSION = (3, 15)


def _missing(reason: str) -> None:
    """Fail under CI (the tier is required there), skip elsewhere; either way, say why."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason}; CI requires the fidelity tier: {INSTALL}", pytrace=False)
    pytest.skip(f"{reason}: {INSTALL}", allow_module_level=True)


def import_keras() -> ModuleType:
    """keras on the torch backend, or a failure (CI) / a skip (elsewhere) that says why."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        keras = None
    # outside the except block, so a CI failure shows the reason, not an import traceback
    if keras is None:
        _missing("keras is not installed")
    version = tuple(int(part) for part in keras.__version__.split(".")[:2])
    if version < MIN_VERSION:
        _missing(f"keras {keras.__version__} is older than 3.15")
    if keras.backend.backend() != "torch":
        _missing("keras was imported with another backend than torch (KERAS_BACKEND=torch)")
    return keras
