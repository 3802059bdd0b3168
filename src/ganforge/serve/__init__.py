"""`ganforge serve`: a local web app to explore generators and runs in a browser.

The generator explorer draws grids and walks between seeds with the public API
(ganforge.latent), the runs browser reads run folders (ganforge.serve.library), and the
compare report is the one `ganforge compare` writes, rendered in memory. The web stack
(Starlette, uvicorn) is the optional extra ``serve``; this module imports it only when a
server starts, so `ganforge --help` and the rest of ganforge never load it.
"""

from __future__ import annotations

import importlib.util

from ganforge.errors import ConfigError

EXTRA_MODULES = ("starlette", "uvicorn")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_extra() -> None:
    """A one-line error naming the extra when the web stack is not installed."""
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"ganforge serve needs the serve extra ({', '.join(missing)} not installed): "
            "pip install 'ganforge[serve]'"
        )


def build_app(
    source: str | None = None,
    pretrained: str | None = None,
    threads: int = 1,
    slots: int = 2,
    hosts: list[str] | None = None,
    precision: str = "fp32",
):
    """The Starlette app for a path (run, model folder, generator file, folder of runs) or a
    shipped generator; what the tests and `ganforge serve` both start. `hosts` limits the
    Host headers it answers, `precision` picks fp32 or bf16 (see serve.app.create_app)."""
    check_extra()
    from ganforge.serve.app import create_app
    from ganforge.serve.library import Library

    library = Library(source, pretrained)
    return create_app(library, threads=threads, slots=slots, hosts=hosts, precision=precision)


def local_host_names(host: str) -> list[str] | None:
    """The Host headers to answer when listening on `host`: a browser on this machine sends
    127.0.0.1 or localhost (Starlette compares them without the port). None (any) for other
    addresses, and for ::1, whose bracketed Host header Starlette's check cannot parse."""
    return ["127.0.0.1", "localhost"] if host in ("127.0.0.1", "localhost") else None
