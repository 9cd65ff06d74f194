"""Fixtures of the server tests: app clients, live uvicorn servers on 127.0.0.1, and test images."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the [serve] extra (uvicorn) is not installed")
pytest.importorskip("httpx", reason="httpx (needed by fastapi.testclient) is not installed")

with warnings.catch_warnings():  # Starlette >= 1.0 warns at import that its TestClient will move to httpx2
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from facelens.serve import ServeSettings, create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ASTRONAUT = REPO / "src" / "facelens" / "assets" / "astronaut.jpg"


def _no_models_dir(tmp: Path) -> Path:
    d = tmp / "no_models"
    d.mkdir(exist_ok=True)
    return d


@contextmanager
def model_env(model_dir: Path | None, tmp: Path) -> Iterator[None]:
    """Make exactly the models in ``model_dir`` (none if ``None``) installed while an app starts."""
    with pytest.MonkeyPatch.context() as mp:
        empty = _no_models_dir(tmp)
        mp.setattr("facelens.heads.registry.PACKAGE_MODEL_DIR", empty)
        mp.setenv("FACELENS_MODEL_PATH", str(model_dir or empty))
        yield


@pytest.fixture(scope="session")
def astronaut_bytes() -> bytes:
    """The bundled public-domain sample photo (one face), as JPEG bytes."""
    return ASTRONAUT.read_bytes()


@pytest.fixture(scope="session")
def serve_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session temporary folder for the server tests."""
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="session")
def head_dir(request: pytest.FixtureRequest) -> Path:
    """A folder holding only the tiny synthetic head model of tests/conftest.py (``tiny-test``, all four tasks)."""
    pytest.importorskip("onnx", reason="onnx is needed to build the tiny head model")
    return request.getfixturevalue("tiny_model_dir")


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """``make_client(heads_dir=None, **settings)``: a started TestClient (lifespan run) of a new app."""
    clients: list[TestClient] = []

    def make(heads_dir: Path | None = None, **kw: object) -> TestClient:
        settings = ServeSettings(**{"threads": 2, **kw})  # type: ignore[arg-type]
        with model_env(heads_dir, tmp_path):
            client = TestClient(create_app(settings))
            client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """A client of an app with default settings and no head model installed."""
    return make_client()


@dataclass
class LiveServer:
    """A uvicorn server running the app in a thread, on 127.0.0.1."""

    url: str
    port: int
    app: object
    server: object
    thread: threading.Thread

    @property
    def engine(self):  # noqa: ANN201 - facelens.serve.engine.Engine
        return self.app.state.engine  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.server.should_exit = True  # type: ignore[attr-defined]
        self.thread.join(timeout=15)


def start_live_server(settings: ServeSettings, heads_dir: Path | None, tmp: Path) -> LiveServer:
    """Start the app under uvicorn on a free loopback port (the socket is bound here, so no port race)."""
    import uvicorn

    from facelens.serve.runner import uvicorn_config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = replace(settings, host="127.0.0.1", port=port)
    with model_env(heads_dir, tmp):
        config = uvicorn_config(settings, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", port, config.app, server, thread)


@pytest.fixture(scope="session")
def live_factory(serve_tmp: Path) -> Iterator[Callable[..., LiveServer]]:
    """``live_factory(heads_dir=None, **settings)``: start a live server; all are stopped at session end."""
    servers: list[LiveServer] = []

    def make(heads_dir: Path | None = None, **kw: object) -> LiveServer:
        s = start_live_server(ServeSettings(**{"threads": 2, **kw}), heads_dir, serve_tmp)  # type: ignore[arg-type]
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def live_server(live_factory: Callable[..., LiveServer]) -> LiveServer:
    """A live server with default settings and no head model installed."""
    return live_factory()


@pytest.fixture(scope="session")
def noise_png() -> Callable[[int, int], bytes]:
    """``noise_png(w, h)``: random-noise PNG bytes (incompressible, so the file is about ``3 w h`` bytes)."""
    from PIL import Image

    def make(w: int, h: int) -> bytes:
        arr = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    return make


def artifacts_dir() -> Path:
    """Where screenshots go: ``$FACELENS_TEST_ARTIFACTS`` or ``tests/artifacts/serve``."""
    root = os.environ.get("FACELENS_TEST_ARTIFACTS")
    d = Path(root) / "serve" if root else REPO / "tests" / "artifacts" / "serve"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The screenshot folder (see :func:`artifacts_dir`)."""
    return artifacts_dir()
