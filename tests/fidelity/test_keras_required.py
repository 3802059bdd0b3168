"""Without keras, the fidelity tier fails under CI and is skipped, with the install command,
elsewhere (tests/fidelity/keras_required.py)."""

from __future__ import annotations

import sys

import pytest
from keras_required import INSTALL, import_keras


@pytest.mark.parametrize("ci", ["true", None])
def test_missing_keras_fails_in_ci_and_skips_with_the_install_command_elsewhere(monkeypatch, ci):
    # None in sys.modules makes `import keras` raise ImportError, installed or not
    monkeypatch.setitem(sys.modules, "keras", None)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="keras is not installed") as caught:
        import_keras()
    assert INSTALL in str(caught.value)
