"""The web app: a Starlette application over a :class:`~ganforge.serve.library.Library`.

Routes (all GET; nothing a request does writes a file):

    /                              the page (static/index.html, plain HTML/JS/CSS)
    /static/...                    the page's scripts, styles and the vendored uPlot
    /api/models                    the generators' names (and the bounds)
    /api/models/{name}             one generator: shape, classes, noise law (loads it)
    /api/models/{name}/grid        images for seeds (png, npy, nii); the command that makes
                                   them in X-Ganforge-Command, percent-encoded
    /api/models/{name}/walk        a walk between seeds (png strip, npy, gif)
    /api/runs                      the runs: name, preset, status, iterations, main metric
    /api/runs/{name}               one run: config, log, eval curve, grids, eval tables
    /api/runs/{name}/files/{path}  a file inside that run folder (contained_file checks it)
    /compare?runs=a,b              the `ganforge compare` report of those runs, built in memory

Every refusal is a 4xx with one line of plain text; an unexpected failure is a 500 with one
line too, never a traceback. Generation runs in worker threads, at most ``slots`` at once;
a request whose page has gone (the page aborts a stale fetch when the user changes a
control again) is dropped before it is drawn, so the newest request is the one computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ganforge.errors import ConfigError, GanforgeError, first_line
from ganforge.serve import views
from ganforge.serve.library import SERVED_TYPES, Forbidden, Library, NotFound, contained_file

STATIC = Path(__file__).parent / "static"
MEDIA = {
    "png": "image/png",
    "npy": "application/octet-stream",
    "nii": "application/gzip",
    "gif": "image/gif",
}
# recent images kept, so stepping back through seeds costs nothing
CACHED_RESULTS = 64
# and at most this much of them (a long GIF walk is megabytes)
CACHED_BYTES = 64 * 2**20
MAX_COMPARE = 8


class ResultCache:
    """The last answers by (model, version, view), at most `size` of them and `limit`
    bytes in all; thread-safe."""

    def __init__(self, size: int = CACHED_RESULTS, limit: int = CACHED_BYTES):
        self.size, self.limit, self.bytes = size, limit, 0
        self._items: OrderedDict[Any, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> bytes | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: Any, value: bytes) -> None:
        with self._lock:
            if key in self._items:
                self.bytes -= len(self._items.pop(key))
            self._items[key] = value
            self.bytes += len(value)
            while self._items and (len(self._items) > self.size or self.bytes > self.limit):
                self.bytes -= len(self._items.popitem(last=False)[1])


def one_line(status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(first_line(Exception(message), 300) + "\n", status_code=status)


def create_app(
    library: Library,
    threads: int = 1,
    slots: int = 2,
    hosts: list[str] | None = None,
    precision: str = "fp32",
) -> Starlette:
    """The app for `library`: `threads` CPU threads per image batch, `slots` batches at once.

    `precision` "bf16" runs the generators under bfloat16 autocast: 2.4 times faster on a
    CPU with AMX (73 against 176 ms for mnist-best's 64-image grid), at up to 8 grey levels
    from the fp32 images the shown command makes (1 % of pixels differ by more than 2).

    `hosts`: the Host headers answered (None: any). On 127.0.0.1 the CLI passes the local
    names, so a web page that points its own domain at 127.0.0.1 (DNS rebinding) cannot
    read the served runs through the user's browser.
    """
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision {precision!r}: choose fp32 or bf16")
    fast = precision == "bf16"
    cache = ResultCache()
    gate = asyncio.Semaphore(slots)

    def draw(name: str, view: Any, make: Callable, encode: Callable) -> bytes:
        import torch

        torch.set_num_threads(threads)
        version, generator, info = library.load(name)
        key = (name, version, view)
        cached = cache.get(key)
        if cached is not None:
            return cached
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=fast):
            data = encode(make(generator, info, view), view.format)
        cache.put(key, data)
        return data

    async def generated(request: Request, parse: Callable, make, encode, command) -> Response:
        name = request.path_params["name"]
        if len(request.url.query) > views.MAX_QUERY:
            return one_line(414, f"query longer than {views.MAX_QUERY} characters")
        view = parse(list(request.query_params.multi_items()))
        entry = library.model(name)
        async with gate:
            # the page gave up on this one (a newer request replaced it): draw nothing
            if await request.is_disconnected():
                return Response(status_code=204)
            data = await run_in_threadpool(draw, name, view, make, encode)
        extension = (views.GRID_FORMATS | views.WALK_FORMATS)[view.format]
        stem = "grid" if parse is views.parse_grid else "walk"
        # headers are Latin-1: the command (paths may hold any character) travels
        # percent-encoded, the file name with anything unusual replaced
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", f"{name}-{stem}") + extension
        headers = {
            "X-Ganforge-Command": quote(command(entry.cli_source, view), safe=" /,=:'\"-"),
            "Content-Disposition": f'inline; filename="{filename}"',
            "Cache-Control": "no-store",
        }
        return Response(data, media_type=MEDIA[view.format], headers=headers)

    async def grid(request: Request) -> Response:
        return await generated(
            request, views.parse_grid, views.grid_images, views.encode_grid, views.grid_command
        )

    async def walk(request: Request) -> Response:
        return await generated(
            request, views.parse_walk, views.walk_frames, views.encode_walk, views.walk_command
        )

    def model_facts(name: str) -> dict[str, Any]:
        from ganforge.conditional import num_classes_of

        generator, info = library.generator(name)
        classes = num_classes_of(generator)
        names = list(info.class_names)[:classes] or [str(i) for i in range(classes)]
        return {
            "name": name,
            "arch": info.arch,
            "dataset": info.dataset,
            "step": info.step,
            "image_shape": list(info.image_shape),
            "classes": names,
            "noise": info.noise,
            "noise_std": info.noise_std,
            "source": library.model(name).cli_source,
            "run": library.model(name).run,
        }

    async def models(request: Request) -> Response:
        # names only: a folder of many runs lists at once; a model loads when it is chosen
        listed = [
            {"name": entry.name, "run": entry.run, "source": entry.cli_source}
            for entry in library.models().values()
        ]
        limits = {"grid": views.MAX_GRID, "frames": views.MAX_FRAMES, "seeds": views.MAX_WALK_SEEDS}
        return JSONResponse({"models": listed, "limits": limits})

    async def model(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(model_facts, request.path_params["name"]))

    async def runs(request: Request) -> Response:
        def listing() -> list[dict[str, Any]]:
            return [library.run_summary(n, library.run(n)) for n in library.run_dirs()]

        return JSONResponse({"runs": await run_in_threadpool(listing)})

    async def run_detail(request: Request) -> Response:
        detail = await run_in_threadpool(library.run_detail, request.path_params["name"])
        return JSONResponse(detail, headers={"Cache-Control": "no-store"})

    async def run_file(request: Request) -> Response:
        run = library.run(request.path_params["name"])
        path = contained_file(run.path, request.path_params["path"])
        return FileResponse(
            path,
            media_type=SERVED_TYPES[path.suffix.lower()],
            headers={"Cache-Control": "no-store"},
        )

    async def compare(request: Request) -> Response:
        values = views.single_values(list(request.query_params.multi_items()), ("runs",))
        names = [n for n in values.get("runs", "").split(",") if n]
        if not 1 <= len(names) <= MAX_COMPARE:
            return one_line(400, f"runs: give 1 to {MAX_COMPARE} run names, comma-separated")
        paths = [library.run(name).path for name in names]
        html = await run_in_threadpool(compare_html, paths)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def refused(request: Request, exc: Exception) -> Response:
        if isinstance(exc, NotFound):
            return one_line(404, str(exc))
        if isinstance(exc, Forbidden):
            return one_line(403, str(exc))
        return one_line(400, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return one_line(exc.status_code, f"{exc.detail} ({request.url.path[:80]})")

    async def failed(request: Request, exc: Exception) -> Response:
        # a bug in ganforge: the page and the client get one line, the console the rest
        return one_line(500, f"internal error: {type(exc).__name__}: {first_line(exc)}")

    def warm() -> None:
        # the first model the page shows, loaded and run once while the browser opens the
        # page: the first grid then costs what every later one does (a cold first pass
        # was 4.7 s on a busy 2-core CPU)
        names = list(library.models())
        if names:
            view = views.GridView(tuple(range(64)), views.Latents(None, None, None, None), "png")
            try:
                draw(names[0], view, views.grid_images, views.encode_grid)
            except GanforgeError:
                # the page shows the same error when the model is chosen
                pass

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        threading.Thread(target=warm, name="ganforge-serve-warm-up", daemon=True).start()
        yield

    routes = [
        Route("/", index),
        Route("/api/models", models),
        Route("/api/models/{name}", model),
        Route("/api/models/{name}/grid", grid),
        Route("/api/models/{name}/walk", walk),
        Route("/api/runs", runs),
        Route("/api/runs/{name}", run_detail),
        Route("/api/runs/{name}/files/{path:path}", run_file),
        Route("/compare", compare),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {GanforgeError: refused, HTTPException: http_error, Exception: failed}
    middleware = [] if hosts is None else [Middleware(TrustedHostMiddleware, allowed_hosts=hosts)]
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan
    )


def compare_html(paths: list[Path]) -> str:
    """The `ganforge compare --no-metrics` report of these runs, plus the metrics table of any
    `ganforge eval` record already in them; rendered in memory, nothing written."""
    import shlex

    from ganforge.report import assemble, read_run, render_html

    records = [read_run(path) for path in paths]
    for record in records:
        saved = sorted(record.path.glob("eval-*.json"))
        if saved:
            try:
                record.evaluation = json.loads(saved[-1].read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record.evaluation = None
    command = "ganforge compare " + " ".join(shlex.quote(str(p)) for p in paths)
    return render_html(assemble(records, True, None, command))
