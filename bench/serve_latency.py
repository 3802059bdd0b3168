#!/usr/bin/env python
"""How fast `ganforge serve` answers: the 64-image grid of mnist-best, over real HTTP.

Starts `ganforge serve --pretrained mnist-best --port 0` as a separate process (once per
``--precision`` and ``--threads`` value), and measures:

* start-up: from launching the process to the printed address, to the first answer, and
  to the first grid (the server warms its first model up as it starts);
* grid latency: the wall time of ``GET /api/models/mnist-best/grid?seeds=S-(S+63)``, from
  the request to the last byte of the PNG, with a new first seed each time so the server's
  result cache never answers (median, 90th percentile, fastest over ``--requests``);
* responsiveness: ``GET /api/runs`` while ``--in-flight`` grid requests are being drawn;
* the install size of the web stack (starlette, uvicorn and what they pull in).

Prints a table and writes every figure to JSON (``--json``). Standard library only on
the client side, so the numbers are the server's, not a client library's.

    python bench/serve_latency.py                       # fp32 and bf16, threads 1 and 2
    python bench/serve_latency.py --threads 1 --requests 10 --json /tmp/serve.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = 64
STACK = ("starlette", "uvicorn", "anyio", "h11", "click", "idna", "sniffio")


def get(url: str, timeout: float = 60) -> tuple[float, bytes]:
    """(seconds, body) of one GET, measured to the last byte."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = response.read()
    return time.perf_counter() - start, body


def start_server(threads: int, precision: str) -> tuple[subprocess.Popen, str, float]:
    """A `ganforge serve` process; (process, base URL, seconds to the printed address)."""
    env = dict(
        os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    command = [sys.executable, "-m", "ganforge", "serve", "--pretrained", "mnist-best"]
    command += ["--port", "0", "--threads", str(threads), "--precision", precision]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline() if process.stdout else ""
    if "http://" not in line:
        process.kill()
        raise SystemExit(f"ganforge serve did not start: {line!r}")
    url = line.split("open ", 1)[1].split()[0].rstrip("/")
    return process, url, time.perf_counter() - start


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median_ms": round(1000 * statistics.median(ordered), 1),
        "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 1),
        "min_ms": round(1000 * ordered[0], 1),
        "count": len(ordered),
    }


def measure(threads: int, precision: str, requests: int, in_flight: int) -> dict:
    launched = time.perf_counter()
    process, url, to_address = start_server(threads, precision)
    try:
        get(url + "/api/models")
        to_first_answer = time.perf_counter() - launched
        grid = url + "/api/models/mnist-best/grid?seeds={}-{}"
        # the first grid a user sees: the server warms the model up as it starts
        first_grid = get(grid.format(300_000, 300_000 + GRID - 1))[0]
        to_first_grid = time.perf_counter() - launched
        # two warm-up grids: the first call of each kernel allocates and picks algorithms
        for seed in (100_000, 200_000):
            get(grid.format(seed, seed + GRID - 1))
        # seeds the warm-up (0-63) and earlier requests never drew: no cached answer
        first = [(i + 1) * GRID for i in range(requests)]
        times = [get(grid.format(s, s + GRID - 1))[0] for s in first]
        busy = threading.Event()

        def hammer(offset: int) -> None:
            seed = 10_000_000 + offset * 1_000_000
            while not busy.is_set():
                get(grid.format(seed, seed + GRID - 1))
                seed += GRID

        workers = [threading.Thread(target=hammer, args=(i,)) for i in range(in_flight)]
        for worker in workers:
            worker.start()
        time.sleep(0.3)
        listing = [get(url + "/api/runs")[0] for _ in range(10)]
        busy.set()
        for worker in workers:
            worker.join()
    finally:
        process.terminate()
        process.wait(10)
    return {
        "threads": threads,
        "precision": precision,
        "startup_to_address_s": round(to_address, 2),
        "startup_to_first_answer_s": round(to_first_answer, 2),
        "first_grid_s": round(first_grid, 3),
        "startup_to_first_grid_s": round(to_first_grid, 2),
        "grid64": summary(times),
        "runs_list_with_grids_in_flight": summary(listing),
    }


def install_size() -> dict[str, float]:
    """MiB on disk of each installed web-stack distribution (files its RECORD lists)."""
    sizes = {}
    for name in STACK:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        total = sum(f.locate().stat().st_size for f in files if f.locate().is_file())
        sizes[name] = round(total / 2**20, 2)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="server --threads values (default 1,2)")
    parser.add_argument(
        "--precision", default="fp32,bf16", help="server --precision values (default fp32,bf16)"
    )
    parser.add_argument("--requests", type=int, default=40, help="timed grids per server")
    parser.add_argument("--in-flight", type=int, default=3, help="grids drawn during the list")
    parser.add_argument(
        "--json", default=str(ROOT / "bench" / "results" / "serve-latency.json"), help="output"
    )
    args = parser.parse_args()
    results = [
        measure(int(threads), precision, args.requests, args.in_flight)
        for precision in args.precision.split(",")
        for threads in args.threads.split(",")
    ]
    sizes = install_size()
    print(
        f"{'precision':>9} {'threads':>7} {'start s':>8} {'1st grid s':>11} {'median ms':>10} "
        f"{'p90 ms':>8} {'min ms':>8} {'list ms (busy)':>15}"
    )
    for r in results:
        g, busy = r["grid64"], r["runs_list_with_grids_in_flight"]
        print(
            f"{r['precision']:>9} {r['threads']:>7} {r['startup_to_first_answer_s']:>8} "
            f"{r['startup_to_first_grid_s']:>11} {g['median_ms']:>10} {g['p90_ms']:>8} "
            f"{g['min_ms']:>8} {busy['median_ms']:>15}"
        )
    print(f"web stack on disk: {sum(sizes.values()):.1f} MiB ({sizes})")
    record = {
        "what": "GET /api/models/mnist-best/grid, 64 new seeds per request, over HTTP",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
        },
        "results": results,
        "install_mib": sizes,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
