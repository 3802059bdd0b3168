"""`ganforge serve`: explore a generator or browse runs in a local web page."""

from __future__ import annotations

import argparse

from ganforge.cli.common import add_pretrained_option, positive_int, say

EXAMPLES = """\
examples:
  ganforge serve --pretrained mnist-best          # the shipped digits, offline
  ganforge serve runs                              # every run in runs/, and their generators
  ganforge serve runs/mnist-best-001 --port 8765   # one run
  ganforge serve demo-model                        # a folder from `ganforge export`

Needs the serve extra: pip install 'ganforge[serve]'. It listens on 127.0.0.1 only,
unless --host says otherwise. See docs/serve.md for every control.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="explore generators and browse runs in a local web page",
        description="Start a local web app: a generator explorer (seeds, class, truncation, "
        "noise, walks between seeds, downloads, the command that reproduces a view) and a "
        "runs browser (status, curves, grids over training, eval tables, compare reports).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pretrained_option(
        p,
        "a run folder, a model folder, a generator file or a folder of runs (or use --pretrained)",
    )
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any free)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only); another "
        "address lets other machines in, with a warning",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="CPU threads per image batch (default 1: fastest on a shared 2-core CPU, "
        "bench/serve_latency.py)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="fp32 (default): the images the shown commands make, up to a grey level; bf16: "
        "about 2.4x faster on CPUs with AMX, up to 8 grey levels off",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.errors import ConfigError
    from ganforge.serve import LOCAL_HOSTS, build_app, check_extra, local_host_names

    check_extra()
    if args.source is not None and args.pretrained is not None:
        raise ConfigError("give a SOURCE or --pretrained NAME, not both")
    if args.source is None and args.pretrained is None:
        raise ConfigError(
            "give a run folder, model folder, generator file or folder of runs to serve, "
            "or --pretrained NAME"
        )
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {args.port}")
    app = build_app(
        args.source,
        args.pretrained,
        threads=args.threads,
        hosts=local_host_names(args.host),
        precision=args.precision,
    )
    import uvicorn

    if args.host not in LOCAL_HOSTS:
        say(
            f"ganforge: warning: listening on {args.host}: any machine that can reach this "
            "one can use the page and read the served runs' images and logs"
        )
    # the socket is bound here, before uvicorn starts: a port in use is one line, and
    # --port 0 is known (and printed) before the first request
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"ganforge serve: open http://{shown}:{port}/  (Ctrl-C stops)", flush=True)
    # log_config=None: uvicorn's default would dictConfig the whole process's logging, which
    # closes every handler already installed (a caller's, or a test runner's capture)
    config = uvicorn.Config(app, log_level="warning", log_config=None)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _listen(host: str, port: int):
    """A listening TCP socket on (host, port), or a one-line ConfigError saying why not."""
    import socket

    from ganforge.errors import ConfigError

    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(
            f"--host {host[:60]}: not an address of this machine ({exc.strerror})"
        ) from None
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(info[4])
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
            "(0 picks a free one) or --host"
        ) from None
    sock.listen(128)
    return sock
