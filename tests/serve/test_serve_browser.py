"""The web page in a real browser: Playwright driving Debian's Chromium against a live uvicorn on 127.0.0.1.

Screenshots go to ``$FACELENS_TEST_ARTIFACTS/serve`` (default ``tests/artifacts/serve``). The tests skip only when
Playwright or Chromium cannot start here. The webcam test feeds Chromium's fake camera a .y4m video made from the
sample photo.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelens.io import load_image

REPO = Path(__file__).resolve().parents[2]
ASTRONAUT = REPO / "src" / "facelens" / "assets" / "astronaut.jpg"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


def chromium_path() -> str | None:
    """Debian's Chromium (``$FACELENS_CHROMIUM`` overrides)."""
    env = os.environ.get("FACELENS_CHROMIUM")
    if env:
        return env
    for name in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(name).exists():
            return name
    return shutil.which("chromium")


def write_y4m(path: Path, width: int = 640, height: int = 480, frames: int = 10) -> Path:
    """A short 4:2:0 .y4m clip of the sample photo (letterboxed, slowly panning) for Chromium's fake camera."""
    rgb = load_image(ASTRONAUT)
    side = height
    face = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            canvas = np.full((height, width, 3), 40, np.uint8)
            x = (width - side) // 2 + (i % 5) * 4 - 8
            canvas[:, x : x + side] = face
            yuv = cv2.cvtColor(canvas, cv2.COLOR_RGB2YUV_I420)  # Y plane, then U, then V
            fh.write(b"FRAME\n" + yuv.tobytes())
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A headless Chromium with a fake camera playing the sample photo; skips if it cannot start."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not installed ({exc})")
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium executable (apt-get install -y chromium)")
    y4m = write_y4m(tmp_path_factory.mktemp("camera") / "astronaut.y4m")
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
    ]
    try:
        pw = sync_playwright().start()
    except Exception as exc:  # noqa: BLE001 - the Playwright driver itself cannot run here
        pytest.skip(f"the Playwright driver cannot start: {exc}")
    try:
        b = pw.chromium.launch(executable_path=exe, args=args, timeout=60_000)
    except PlaywrightError as exc:
        pw.stop()
        pytest.skip(f"Chromium cannot start: {str(exc).splitlines()[0]}")
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def page_factory(browser) -> Iterator[Callable[..., object]]:  # noqa: ANN001
    """``page_factory(server)``: a fresh page (own context) on the server's ``/``; console errors collected."""
    contexts = []

    def make(server, **context_kw: object):  # noqa: ANN001, ANN202
        ctx = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True, **context_kw)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.errors = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
        page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))  # type: ignore[attr-defined]
        page.goto(server.url + "/")
        page.wait_for_selector("#server-status[data-state='ready']")
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def canvas_has_box(page) -> bool:  # noqa: ANN001
    """True when the photo canvas holds pixels of the box colour (#2ecc71)."""
    return page.evaluate(
        """() => {
        const c = document.getElementById('photo-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (Math.abs(d[i] - 46) < 12 && Math.abs(d[i + 1] - 204) < 12 && Math.abs(d[i + 2] - 113) < 12) n++;
        }
        return n > 200;
    }"""
    )


def test_upload_shows_boxes_and_faces_table(live_server, page_factory, artifacts: Path) -> None:  # noqa: ANN001
    page = page_factory(live_server)
    assert "not installed" in page.inner_text("#heads-note")
    page.set_input_files("#file-input", str(ASTRONAUT))
    page.wait_for_selector("#faces-table:not([hidden])")
    assert page.inner_text("#photo-summary").startswith("1 face found")
    rows = page.query_selector_all("#faces-table tbody tr")
    assert len(rows) == 1
    cells = [c.inner_text() for c in rows[0].query_selector_all("td")]
    assert cells[0] == "1" and re.fullmatch(r"0\.\d\d", cells[1])
    assert cells[2:] == ["not installed"] * 4
    assert page.eval_on_selector("#photo-canvas", "c => [c.width, c.height]") == [512, 512]
    assert canvas_has_box(page)
    assert page.is_hidden("#no-face") and page.is_hidden("#photo-error")
    page.screenshot(path=str(artifacts / "upload-detection-only.png"), full_page=True)
    with page.expect_download() as dl:
        page.click("#download-json")
    saved = json.loads(Path(dl.value.path()).read_text())
    assert saved["width"] == 512 and len(saved["faces"]) == 1 and dl.value.suggested_filename.endswith(".json")
    assert page.errors == []  # type: ignore[attr-defined]


def test_upload_with_heads_fills_table(live_factory, head_dir: Path, page_factory, artifacts: Path) -> None:  # noqa: ANN001
    page = page_factory(live_factory(heads_dir=head_dir))
    assert page.is_hidden("#heads-note")
    page.set_input_files("#file-input", str(ASTRONAUT))
    page.wait_for_selector("#faces-table:not([hidden])")
    cells = [c.inner_text() for c in page.query_selector_all("#faces-table tbody tr td")]
    assert re.fullmatch(r"\d+ \(\d+–\d+\)", cells[2]), cells
    assert re.fullmatch(r"(male|female) \d+%", cells[3]) and re.fullmatch(r"\w+ \d+%", cells[4])
    assert len(page.query_selector_all("#faces-table .attr")) == 5 and "not installed" not in " ".join(cells)
    assert canvas_has_box(page)
    page.screenshot(path=str(artifacts / "upload-with-heads.png"), full_page=True)


def test_drag_and_drop(live_server, page_factory) -> None:  # noqa: ANN001
    page = page_factory(live_server)
    payload = base64.b64encode(ASTRONAUT.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """(b64) => {
        const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'dropped.jpg', { type: 'image/jpeg' }));
        return dt;
    }""",
        payload,
    )
    page.dispatch_event("#dropzone", "dragover", {"dataTransfer": transfer})
    assert "over" in page.get_attribute("#dropzone", "class")
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#faces-table:not([hidden])")
    assert page.evaluate("() => window.facelens.lastResult().path") == "dropped.jpg"
    assert canvas_has_box(page)


def test_no_face_and_error_states(live_server, page_factory, tmp_path: Path, artifacts: Path) -> None:  # noqa: ANN001
    page = page_factory(live_server)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 200, np.uint8))
    page.set_input_files("#file-input", str(blank))
    page.wait_for_selector("#no-face:not([hidden])")
    assert page.inner_text("#photo-summary") == "No face found" and page.is_hidden("#faces-table")
    page.screenshot(path=str(artifacts / "no-face.png"), full_page=True)

    text = tmp_path / "notes.jpg"  # the name says image; the bytes do not
    text.write_text("these are not pixels\n")
    page.set_input_files("#file-input", str(text))
    page.wait_for_selector("#photo-error:not([hidden])")
    assert "not an image" in page.inner_text("#photo-error") and page.is_hidden("#photo-result")
    page.screenshot(path=str(artifacts / "error-not-an-image.png"), full_page=True)

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(ASTRONAUT.read_bytes()[:3000])
    page.set_input_files("#file-input", str(broken))
    page.wait_for_function("() => document.getElementById('photo-error').textContent.includes('corrupt')")


def test_api_key_prompt(live_factory, page_factory) -> None:  # noqa: ANN001
    page = page_factory(live_factory(api_key="page-key"))
    page.set_input_files("#file-input", str(ASTRONAUT))
    page.wait_for_selector("#photo-error:not([hidden])")
    assert "API key" in page.inner_text("#photo-error") and page.eval_on_selector("#settings", "d => d.open")
    page.fill("#opt-api-key", "page-key")
    page.set_input_files("#file-input", str(ASTRONAUT))
    page.wait_for_selector("#faces-table:not([hidden])")


def test_webcam_streams_results_over_websocket(live_server, page_factory, artifacts: Path) -> None:  # noqa: ANN001
    page = page_factory(live_server)
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    page.click("#tab-webcam")
    page.click("#cam-start")
    page.wait_for_function("() => parseInt(document.getElementById('cam-frames').textContent, 10) >= 4", timeout=60_000)
    fps = float(page.inner_text("#cam-fps"))
    latency = page.inner_text("#cam-latency")
    assert 0 < fps <= 30 and re.fullmatch(r"\d+ ms", latency), (fps, latency)
    assert page.inner_text("#cam-faces") == "1"
    results = [json.loads(f) for f in frames if '"type": "result"' in f or '"type":"result"' in f]
    assert len(results) >= 4 and all(len(r["result"]["faces"]) == 1 for r in results)
    page.wait_for_timeout(300)  # let an animation frame draw the overlay on the live picture
    page.screenshot(path=str(artifacts / "webcam-live.png"), full_page=True)
    assert live_server.engine.open_streams == 1
    page.click("#cam-stop")
    assert page.is_enabled("#cam-start") and page.is_disabled("#cam-stop")
    wait_streams_closed(live_server)

    page.click("#cam-start")  # again, then close the tab: the stream must end with it
    page.wait_for_function("() => parseInt(document.getElementById('cam-frames').textContent, 10) >= 2", timeout=60_000)
    page.close()
    wait_streams_closed(live_server)
    assert page.errors == []  # type: ignore[attr-defined]


def wait_streams_closed(server) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 10
    while server.engine.open_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.engine.open_streams == 0


def test_webcam_denied_shows_message(live_server, page_factory, artifacts: Path) -> None:  # noqa: ANN001
    page = page_factory(live_server)
    page.add_init_script(
        "navigator.mediaDevices.getUserMedia = () => "
        "Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));"
    )
    page.reload()
    page.wait_for_selector("#server-status[data-state='ready']")
    page.click("#tab-webcam")
    page.click("#cam-start")
    page.wait_for_selector("#cam-message:not([hidden])")
    assert "denied" in page.inner_text("#cam-message") and page.is_enabled("#cam-start")
    page.screenshot(path=str(artifacts / "webcam-denied.png"), full_page=True)
    assert live_server.engine.open_streams == 0


def test_api_docs_render_offline(live_server, browser) -> None:  # noqa: ANN001
    from facelens.serve.app import swagger_assets_dir

    if swagger_assets_dir() is None:
        pytest.skip("swagger-ui-py (in the [serve] extra) is not installed: /docs would load Swagger UI from its CDN")
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(live_server.url + "/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=TIMEOUT_MS)
        text = page.inner_text(".swagger-ui")
        assert "/v1/analyze" in text and "/v1/analyze/batch" in text
    finally:
        ctx.close()
