"""The package's version, in a module of its own: a submodule that records it (exported
generators, run reports, ``ganforge --version``) imports it from here, never from the
package above it. pyproject.toml states the same number."""

__version__ = "0.1.0"
