"""`ganforge serve`'s HTTP API, through Starlette's TestClient: what the page asks and gets.

The explorer's images must be the ones `ganforge sample` / `interpolate` make from the
command the page shows; the runs browser must read runs without writing into them; every
bad request must be a 4xx with one line; and no file outside a served run may come out.
The browser itself is tested in test_serve_browser.py.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

pytest.importorskip("starlette", reason="needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="needs httpx for TestClient: pip install -e '.[serve-test]'")


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory, tiny_config, tiny_images):
    """A folder of runs: two tiny finished runs and a model folder (mnist-best's generator)."""
    from ganforge import RunOptions, train
    from ganforge.pretrained import pretrained_path

    root = tmp_path_factory.mktemp("served") / "runs"
    for name in ("alpha", "beta"):
        config = tiny_config(out_dir=str(root), run_name=name, iterations=6)
        train(config, run=RunOptions(data=tiny_images(), show_progress=False))
    # a model folder as `ganforge export --format folder` writes it: config.json included
    (root / "digits").mkdir()
    shutil.copy(pretrained_path("mnist-best"), root / "digits" / "model.safetensors")
    (root / "digits" / "config.json").write_text('{"library_name": "ganforge"}')
    return root


def client_for(source=None, pretrained=None):
    from ganforge.serve import build_app

    with warnings.catch_warnings():
        # Starlette 1.x suggests httpx2 for TestClient; httpx is what it still runs on
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        return TestClient(build_app(source, pretrained), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def pretrained_library():
    """mnist-best's library, shared so its generator loads once for the whole module."""
    from ganforge.serve.library import Library

    return Library(pretrained="mnist-best")


@pytest.fixture(scope="module")
def pretrained_client(pretrained_library):
    from ganforge.serve.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        return TestClient(create_app(pretrained_library), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def runs_client(runs_root):
    return client_for(runs_root)


def snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime)
        for p in sorted(folder.rglob("*"))
    }


def command_of(response) -> str:
    """The command a view carries (percent-encoded: HTTP headers are Latin-1)."""
    return unquote(response.headers["x-ganforge-command"])


def assert_one_line(response, status: int, *fragments: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    text = response.text
    assert text.count("\n") == 1 and "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_grid_is_what_the_shown_command_writes(pretrained_client, tmp_path, cli):
    """The .npy of a view equals `ganforge sample` run with the command the page shows, up to
    the one grey level a batched forward pass may differ by (latent.images_for_latents)."""
    response = pretrained_client.get(
        "/api/models/mnist-best/grid?seeds=5-13&class=3&truncation=0.8&format=npy"
    )
    assert response.status_code == 200, response.text
    command = command_of(response)
    assert command == (
        "ganforge sample --pretrained mnist-best --seeds 5-13 --class 3 --truncation 0.8 "
        "--out grid.npy"
    )
    served = np.load(io.BytesIO(response.content))
    out = tmp_path / "grid.npy"
    argv = command.split()[1:-1] + [str(out)]
    assert cli(*argv).code == 0
    written = np.load(out)
    assert served.shape == written.shape == (9, 28, 28, 1)
    assert np.abs(served.astype(int) - written.astype(int)).max() <= 1


def test_grid_png_changes_with_seed_and_is_cached(pretrained_client):
    from PIL import Image

    first = pretrained_client.get("/api/models/mnist-best/grid?seeds=0-63")
    again = pretrained_client.get("/api/models/mnist-best/grid?seeds=0-63")
    other = pretrained_client.get("/api/models/mnist-best/grid?seeds=64-127")
    assert first.headers["content-type"] == "image/png"
    assert first.content == again.content != other.content
    # 8 x 8 cells of 28 px with 2 px padding, enlarged twice, as `ganforge sample` writes it
    assert Image.open(io.BytesIO(first.content)).size == (2 * (8 * 30 + 2),) * 2


def test_walk_strip_gif_and_command(pretrained_client):
    from PIL import Image

    strip = pretrained_client.get("/api/models/mnist-best/walk?seeds=3,7,12&frames=12&loop=0")
    assert strip.status_code == 200, strip.text
    assert Image.open(io.BytesIO(strip.content)).size == (28, 12 * 28)
    assert command_of(strip) == (
        "ganforge interpolate --pretrained mnist-best --seeds 3,7,12 --frames 12 --no-loop "
        "--out walk.gif"
    )
    gif = pretrained_client.get("/api/models/mnist-best/walk?seeds=3,7&frames=6&format=gif")
    assert gif.content[:6] == b"GIF89a"


def test_noise_law_and_class_names_reach_the_command(pretrained_client):
    response = pretrained_client.get(
        "/api/models/mnist-best/grid?seeds=0-3&noise=normal&noise_std=0.5"
    )
    assert response.status_code == 200
    assert "--noise normal --noise-std 0.5" in command_of(response)
    listed = pretrained_client.get("/api/models").json()
    assert listed["models"] == [
        {"name": "mnist-best", "run": None, "source": ["--pretrained", "mnist-best"]}
    ]
    assert listed["limits"] == {"grid": 256, "frames": 240, "seeds": 16}
    facts = pretrained_client.get("/api/models/mnist-best").json()
    assert facts["classes"] == [str(i) for i in range(10)] and facts["image_shape"] == [1, 28, 28]


@pytest.mark.parametrize(
    ("query", "status", "fragment"),
    [
        ("grid?seeds=0-256", 400, "1 to 256 seeds"),
        ("grid?seeds=0-99999999", 400, "seeds"),
        ("grid?seeds=abc", 400, "non-negative whole numbers"),
        ("grid?seeds=99999999999999999999", 400, "64 bits"),
        ("grid?seeds=1&seeds=2", 400, "given twice"),
        ("grid?evil=%3Cscript%3E", 400, "unknown parameter"),
        ("grid?truncation=nan", 400, "finite"),
        ("grid?truncation=-1", 400, "positive"),
        ("grid?class=11", 400, "valid classes: 0-9"),
        ("grid?class=%00%ff", 400, "class number or a class name"),
        ("grid?class=7%0A8", 400, "class number or a class name"),
        ("grid?class=%C2%B2", 400, "valid classes"),
        ("walk?seeds=1,2&frames=%C2%B2", 400, "whole number"),
        ("grid?noise=cauchy", 400, "normal, uniform"),
        ("grid?noise=uniform&noise_std=2", 400, "noise-std"),
        ("grid?noise=uniform&truncation=0.5", 400, "Gaussian latents only"),
        ("grid?format=exe", 400, "png, npy, nii"),
        ("walk?seeds=3", 400, "2 to 16 seeds"),
        ("walk?seeds=0-16", 400, "2 to 16 seeds"),
        ("walk?seeds=1,2&frames=241", 400, "2 to 240"),
        ("walk?seeds=1,2&frames=1e9", 400, "whole number"),
        ("walk?seeds=1,2&loop=maybe", 400, "loop"),
        ("grid?seeds=" + "1," * 1000 + "1", 414, "query longer"),
    ],
)
def test_bad_queries_get_one_line_4xx(pretrained_client, query, status, fragment):
    assert_one_line(pretrained_client.get(f"/api/models/mnist-best/{query}"), status, fragment)


def test_unknown_names_are_404(pretrained_client, runs_client):
    assert_one_line(pretrained_client.get("/api/models/nope/grid"), 404, "no model named")
    assert_one_line(runs_client.get("/api/runs/nope"), 404, "no run named")
    assert_one_line(runs_client.get("/nothing/here"), 404, "Not Found")


def test_runs_list_detail_and_files(runs_client):
    runs = {run["name"]: run for run in runs_client.get("/api/runs").json()["runs"]}
    assert set(runs) == {"alpha", "beta"}
    assert runs["alpha"]["status"] == "finished" and runs["alpha"]["step"] == 6
    assert runs["alpha"]["preset"] == "mnist-gan"
    detail = runs_client.get("/api/runs/alpha").json()
    assert [record["step"] for record in detail["log"]] == [2, 4, 6]
    assert [frame["step"] for frame in detail["frames"]]
    assert detail["config"]["run_name"] == "alpha" and detail["reals"] == "reals.png"
    grid = runs_client.get(f"/api/runs/alpha/files/{detail['frames'][-1]['file']}")
    assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"
    models = {model["name"] for model in runs_client.get("/api/models").json()["models"]}
    assert models == {"alpha", "beta", "digits"}
    command = command_of(runs_client.get("/api/models/alpha/grid?seeds=0-3"))
    assert command.startswith("ganforge sample ") and "runs/alpha --seeds 0-3" in command


def test_run_status_running_diverged_stopped(runs_root, tmp_path):
    from ganforge.artefacts.rundir import RunDirectory
    from ganforge.serve.library import RUNNING_WINDOW_SECONDS, run_status

    run = RunDirectory(tmp_path / "live")
    shutil.copytree(runs_root / "alpha", run.path, symlinks=True)
    assert run_status(run) == "finished"
    run.summary_file.unlink()
    # copytree kept the log's time; the test must not depend on how long ago that was
    os.utime(run.metrics_file)
    assert run_status(run) == "running"
    assert run_status(run, now=time.time() + RUNNING_WINDOW_SECONDS + 1) == "stopped"
    run.append_jsonl(run.metrics_file, {"step": 8, "d_loss": float("nan"), "g_loss": 1.0})
    assert run_status(run) == "diverged"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("..%2F..%2F..%2Fetc%2Fpasswd", 403),
        ("samples%2F..%2F..%2Fbeta%2Fconfig.json", 403),
        ("%2Fetc%2Fpasswd", 403),
        ("%5C..%5Cconfig.json", 403),
        ("C:%2Fwindows", 403),
        ("checkpoints/ckpt-00000006.pt", 403),
        ("escape.png", 403),
        ("outside/secret.json", 403),
        ("missing.png", 404),
    ],
)
def test_files_outside_the_run_are_refused(runs_root, runs_client, path, status):
    """Traversal, absolute paths, backslashes, drive letters and symlinks that leave the run
    folder are refused; checkpoints are never handed out."""
    secret = runs_root.parent / "secret.json"
    secret.write_text('{"secret": 1}')
    for link, target in (("escape.png", secret), ("outside", runs_root.parent)):
        if not (runs_root / "alpha" / link).is_symlink():
            os.symlink(target, runs_root / "alpha" / link)
    response = runs_client.get(f"/api/runs/alpha/files/{path}")
    assert_one_line(response, status)
    assert "secret" not in response.text and "root:" not in response.text


def test_serving_writes_nothing_into_runs(runs_root, runs_client):
    before = snapshot(runs_root)
    runs_client.get("/api/runs")
    runs_client.get("/api/runs/alpha")
    runs_client.get("/api/models/alpha/grid?seeds=0-3&format=nii")
    runs_client.get("/api/models/beta/walk?seeds=1,2&frames=4&format=gif")
    report = runs_client.get("/compare?runs=alpha,beta")
    assert report.status_code == 200 and "alpha" in report.text and "beta" in report.text
    assert "<html" in report.text.lower()
    assert snapshot(runs_root) == before


def test_compare_needs_finished_runs_by_name(runs_client):
    assert_one_line(runs_client.get("/compare?runs="), 400, "1 to 8 run names")
    assert_one_line(runs_client.get("/compare?runs=alpha,../x"), 404, "no run named")
    assert_one_line(runs_client.get("/compare?runs=a&x=1"), 400, "unknown parameter")


def test_library_takes_each_kind_of_path(runs_root):
    from ganforge.serve.library import Library

    run = runs_root / "alpha"
    assert list(Library(run).models()) == ["alpha"] and list(Library(run).run_dirs()) == ["alpha"]
    generator_file = Library(run / "generator.safetensors")
    assert list(generator_file.models()) == ["generator"] and generator_file.run_dirs() == {}
    assert list(Library(runs_root / "digits").models()) == ["digits"]
    assert list(Library(pretrained="mnist-best").models()) == ["mnist-best"]


def test_serve_cli_errors_are_one_line(cli, user_error, tmp_path, monkeypatch):
    user_error(cli("serve"), "--pretrained NAME")
    user_error(cli("serve", str(tmp_path / "none")), "not found")
    user_error(cli("serve", str(tmp_path)), "neither a run folder")
    user_error(cli("serve", "--pretrained", "nope"), "unknown pretrained generator")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "starlette" else real(name)
    )
    user_error(cli("serve", "--pretrained", "mnist-best"), "pip install 'ganforge[serve]'")


def test_serve_binds_locally_unless_told_and_warns(cli, monkeypatch):
    import uvicorn

    hosts = []

    def run(self, sockets):
        hosts.append(sockets[0].getsockname()[0])
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    result = cli("serve", "--pretrained", "mnist-best", "--port", "0")
    assert result.code == 0 and hosts == ["127.0.0.1"] and "warning" not in result.err
    assert result.out.startswith("ganforge serve: open http://127.0.0.1:")
    result = cli("serve", "--pretrained", "mnist-best", "--host", "0.0.0.0", "--port", "0")
    assert result.code == 0 and hosts[-1] == "0.0.0.0"
    assert "warning: listening on 0.0.0.0" in result.err


def test_a_port_in_use_is_one_line(cli, user_error):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--pretrained", "mnist-best", "--port", port)
    user_error(result, f"cannot listen on 127.0.0.1:{port}", "choose another --port")


def test_help_does_not_import_the_web_stack():
    code = (
        "import sys; from ganforge.cli import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_models_json_has_no_nan(runs_root, runs_client):
    """Browsers refuse NaN in JSON: a diverged log line must come out as null."""
    run = runs_root / "beta"
    before = (run / "metrics.jsonl").read_text()
    try:
        with open(run / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps({"step": 8, "d_loss": float("nan"), "g_loss": 1.0}) + "\n")
        text = runs_client.get("/api/runs/beta").text
        assert "NaN" not in text and json.loads(text)["log"][-1]["d_loss"] is None
    finally:
        (run / "metrics.jsonl").write_text(before)


def test_any_folder_name_reaches_the_command(runs_root, tmp_path):
    """A path that HTTP headers cannot carry as it is (non-Latin-1) still gives its command."""
    folder = tmp_path / "Läufe ✓"
    shutil.copytree(runs_root / "alpha", folder / "alpha", symlinks=True)
    response = client_for(folder).get("/api/models/alpha/grid?seeds=0")
    assert response.status_code == 200, response.text
    assert command_of(response).startswith(f"ganforge sample '{folder / 'alpha'}' --seeds 0")


def test_a_failure_inside_is_a_one_line_500(pretrained_client, monkeypatch):
    from ganforge.serve.library import Library

    def broken(self, name):
        raise RuntimeError("weights on fire\nsecond line")

    monkeypatch.setattr(Library, "load", broken)
    response = pretrained_client.get("/api/models/mnist-best/grid?seeds=9-10")
    assert_one_line(response, 500, "internal error: RuntimeError: weights on fire")


def test_only_local_host_names_are_answered_on_127_0_0_1():
    """A page on another domain that points its name at 127.0.0.1 (DNS rebinding) gets a
    400, so it cannot read the served runs through the user's browser."""
    import warnings

    from ganforge.serve import build_app, local_host_names

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    app = build_app(pretrained="mnist-best", hosts=local_host_names("127.0.0.1"))
    client = TestClient(app, base_url="http://127.0.0.1:8765")
    assert client.get("/api/models").status_code == 200
    assert client.get("/api/models", headers={"host": "localhost:8765"}).status_code == 200
    evil = client.get("/api/models", headers={"host": "attacker.example:8765"})
    assert evil.status_code == 400 and evil.text.count("\n") <= 1
    assert local_host_names("0.0.0.0") is None


def test_the_result_cache_keeps_to_its_count_and_bytes():
    from ganforge.serve.app import ResultCache

    cache = ResultCache(size=3, limit=10)
    for key in "abc":
        cache.put(key, b"xx")
    cache.put("d", b"xx")
    assert cache.get("a") is None and cache.get("d") == b"xx"
    cache.put("big", b"x" * 9)
    assert cache.bytes <= 10 and cache.get("big") == b"x" * 9 and cache.get("b") is None


def test_any_query_string_gets_an_answer_or_a_one_line_4xx(pretrained_client):
    """Hypothesis writes the queries: known and unknown keys, any text as values."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    keys = st.sampled_from(["seeds", "class", "truncation", "noise", "noise_std", "format", "x"])
    values = st.one_of(
        st.text(max_size=12),
        st.sampled_from(["0-3", "7", "0.5", "-1", "1e400", "uniform", "npy", "../x", "%00"]),
    )

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(keys, values), max_size=4), st.sampled_from(["grid", "walk"]))
    def check(pairs, view):
        # the default grid is 64 images and the default walk 60 frames; a few will do
        given_keys = {key for key, _ in pairs}
        if view == "grid" and "seeds" not in given_keys:
            pairs = [("seeds", "0-3"), *pairs]
        if view == "walk":
            pairs = [*pairs, ("frames", "4")]
        response = pretrained_client.get(f"/api/models/mnist-best/{view}", params=pairs)
        assert response.status_code == 200 or 400 <= response.status_code < 500
        if response.status_code != 200:
            assert_one_line(response, response.status_code)

    check()


def test_a_request_whose_page_left_is_not_drawn(pretrained_library, monkeypatch):
    """Latest wins on the server too: with one batch at a time, a request queued behind
    another and then abandoned (the page aborted it) is skipped; the next one is drawn."""
    import http.client
    import socket
    import threading

    import uvicorn

    from ganforge.serve import views
    from ganforge.serve.app import create_app

    drawn, real, release = [], views.grid_images, threading.Event()

    def held(generator, info, view):
        drawn.append(view.seeds[0])
        # the first grid holds the one slot until the abandoned request has queued and left
        if view.seeds[0] == 1000:
            release.wait(10)
        return real(generator, info, view)

    monkeypatch.setattr(views, "grid_images", held)
    app = create_app(pretrained_library, slots=1)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]

    def grid(first: int, abandon_after: float | None = None) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", f"/api/models/mnist-best/grid?seeds={first}-{first + 1}")
        if abandon_after is None:
            assert connection.getresponse().status == 200
        else:
            time.sleep(abandon_after)
            connection.sock.shutdown(socket.SHUT_RDWR)
        connection.close()

    try:
        grid(10)  # after the start-up warm-up (seeds 0-63) has drawn
        drawn.clear()
        first = threading.Thread(target=grid, args=(1000,))
        first.start()
        while drawn != [1000]:
            time.sleep(0.01)
        grid(2000, abandon_after=0.2)
        time.sleep(0.2)
        last = threading.Thread(target=grid, args=(3000,))
        last.start()
        time.sleep(0.1)
        release.set()
        first.join()
        last.join()
    finally:
        release.set()
        server.should_exit = True
        thread.join(10)
    assert drawn == [1000, 3000]


def test_bf16_draws_the_same_digits_within_a_few_grey_levels(pretrained_library):
    from ganforge.errors import ConfigError
    from ganforge.serve.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    query = "/api/models/mnist-best/grid?seeds=0-7&format=npy"
    exact = np.load(io.BytesIO(TestClient(create_app(pretrained_library)).get(query).content))
    fast_app = create_app(pretrained_library, precision="bf16")
    fast = np.load(io.BytesIO(TestClient(fast_app).get(query).content))
    difference = np.abs(exact.astype(int) - fast.astype(int))
    assert difference.max() <= 16 and difference.mean() < 0.5
    with pytest.raises(ConfigError, match="fp32 or bf16"):
        create_app(pretrained_library, precision="fp16")


def test_a_damaged_run_folder_still_lists_and_shows(runs_root, tmp_path):
    """Logs with lines that are JSON but not records, and an eval file of the wrong shape:
    the runs list and the run page still answer, showing what can be read."""
    folder = tmp_path / "runs"
    shutil.copytree(runs_root / "beta", folder / "beta", symlinks=True)
    with open(folder / "beta" / "metrics.jsonl", "a") as handle:
        handle.write('[1, 2]\n7\n"text"\n{"step": 8, "d_loss": "high"}\n')
    (folder / "beta" / "eval.jsonl").write_text('{"step": 3, "fid": [1]}\nnull\n')
    (folder / "beta" / "eval-0.json").write_text(
        '{"metrics": {"fid": 3.5}, "intervals": {"fid": 2}, "better": ["lower"]}'
    )
    client = client_for(folder)
    listed = client.get("/api/runs")
    assert listed.status_code == 200 and listed.json()["runs"][0]["step"] == 6
    detail = client.get("/api/runs/beta")
    assert detail.status_code == 200, detail.text
    table = detail.json()["eval_tables"][0]["rows"][0]
    assert table == {"metric": "fid", "value": 3.5, "interval": None, "better": ""}


def test_a_pickled_checkpoint_is_refused_and_runs_nothing(tmp_path):
    """A run whose newest checkpoint carries a code-running pickle: serve loads through the
    safe reader (torch.load(weights_only=True)), answers 400 and never runs the payload."""
    import builtins
    import pickle

    marker = tmp_path / "pwned"

    class OpensFile:
        def __reduce__(self):
            return (builtins.open, (str(marker), "w"))

    run = tmp_path / "runs" / "evil"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    state = {"format": 1, "step": 7, "generator": {}, "payload": OpensFile()}
    (run / "checkpoints" / "ckpt-00000007.pt").write_bytes(pickle.dumps(state, protocol=2))
    client = client_for(tmp_path / "runs")
    assert [model["name"] for model in client.get("/api/models").json()["models"]] == ["evil"]
    assert_one_line(client.get("/api/models/evil/grid?seeds=0"), 400, "refused")
    assert_one_line(client.get("/api/models/evil"), 400, "refused")
    assert not marker.exists()
