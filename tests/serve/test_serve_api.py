"""API tests of facelens serve (in-process, with FastAPI's TestClient): endpoints, options, auth, CORS, WebSocket."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from facelens.pipeline import FaceAnalyzer
from facelens.serve.app import swagger_assets_dir

STATIC = Path(__file__).resolve().parents[2] / "src" / "facelens" / "serve" / "static"
SCHEMA = Path(__file__).resolve().parents[2] / "src" / "facelens" / "schema" / "result.schema.json"
Maker = Callable[..., TestClient]


def jpeg(data: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"image": ("astronaut.jpg", data, "image/jpeg")}


def assert_error(r, status: int, code: str) -> dict:  # noqa: ANN001
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


@pytest.fixture(scope="module")
def expected_faces() -> list[dict]:
    """What the library itself finds on the sample photo (detection only)."""
    path = Path(__file__).resolve().parents[2] / "src" / "facelens" / "assets" / "astronaut.jpg"
    return FaceAnalyzer(heads=()).analyze(path).to_dict()["faces"]


# ---- /v1/analyze -----------------------------------------------------------------------------------------------


def test_analyze_multipart_matches_library(client: TestClient, astronaut_bytes: bytes, expected_faces) -> None:  # noqa: ANN001
    r = client.post("/v1/analyze", files=jpeg(astronaut_bytes))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {"path": "astronaut.jpg", "width": 512, "height": 512, "faces": expected_faces, "error": None}
    assert len(body["faces"]) == 1 and set(body["faces"][0]) == {"box", "score", "landmarks"}
    assert r.headers["server-timing"].startswith("analyze;dur=")


def test_analyze_raw_body_and_sniffed_type(client: TestClient, astronaut_bytes: bytes, expected_faces) -> None:  # noqa: ANN001
    for ctype in ("image/jpeg", "image/png", "application/octet-stream"):  # the declared type does not matter
        r = client.post("/v1/analyze", content=astronaut_bytes, headers={"content-type": ctype})
        assert r.status_code == 200, r.text
        assert r.json()["faces"] == expected_faces and r.json()["path"] is None
    png = io.BytesIO()
    Image.open(io.BytesIO(astronaut_bytes)).save(png, format="PNG")
    r = client.post("/v1/analyze", content=png.getvalue(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and len(r.json()["faces"]) == 1


@pytest.mark.parametrize("fmt,magic", [("jpeg", b"\xff\xd8\xff"), ("png", b"\x89PNG")])
def test_annotate_returns_image(client: TestClient, astronaut_bytes: bytes, fmt: str, magic: bytes) -> None:
    r = client.post(f"/v1/analyze?annotate=true&format={fmt}", files=jpeg(astronaut_bytes))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"image/{fmt}"
    assert r.content.startswith(magic) and r.headers["x-facelens-faces"] == "1"
    drawn = Image.open(io.BytesIO(r.content))
    assert drawn.size == (512, 512)
    assert_error(client.post("/v1/analyze?annotate=true&format=gif", files=jpeg(astronaut_bytes)), 422,
                 "invalid_parameter")  # fmt: skip


def test_query_options(client: TestClient, astronaut_bytes: bytes) -> None:
    def faces(query: str) -> list:
        r = client.post(f"/v1/analyze?{query}", files=jpeg(astronaut_bytes))
        assert r.status_code == 200, r.text
        return r.json()["faces"]

    assert len(faces("min_score=0.5&max_faces=1&max_side=0&min_face_size=10")) == 1
    assert faces("min_score=0.99") == []
    assert faces("min_face_size=200") == []
    assert len(faces("heads=none")) == 1
    for bad in ("min_score=1.5", "min_score=abc", "max_side=-1", "max_faces=0", "min_face_size=-2"):
        body = assert_error(client.post(f"/v1/analyze?{bad}", files=jpeg(astronaut_bytes)), 422, "invalid_parameter")
        assert bad.split("=")[0] in body["error"]["message"]
    body = assert_error(client.post("/v1/analyze?heads=missing", files=jpeg(astronaut_bytes)), 422, "unknown_head")
    assert "missing" in body["error"]["message"]
    assert_error(client.post("/v1/analyze?heads=/tmp/x.onnx", files=jpeg(astronaut_bytes)), 422, "invalid_parameter")


def test_with_heads_full_schema(make_client: Maker, head_dir: Path, astronaut_bytes: bytes) -> None:
    c = make_client(heads_dir=head_dir)
    ready = c.get("/readyz").json()
    assert ready["models"] == ["tiny-test"] and ready["missing_tasks"] == []
    models = c.get("/v1/models").json()
    assert [m["name"] for m in models["models"]] == ["tiny-test"]
    assert models["models"][0]["tasks"] == ["age", "gender", "race", "attributes"]
    assert "path" not in models["models"][0]  # no server file paths
    r = c.post("/v1/analyze", files=jpeg(astronaut_bytes))
    assert r.status_code == 200, r.text
    face = r.json()["faces"][0]
    assert {"age", "age_interval", "age_group", "gender", "race", "attributes"} <= set(face)
    assert len(face["attributes"]) == 40
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(r.json(), json.loads(SCHEMA.read_text()))
    only = c.post("/v1/analyze?heads=tiny-test", files=jpeg(astronaut_bytes)).json()["faces"][0]
    assert only == face
    bare = c.post("/v1/analyze?heads=none", files=jpeg(astronaut_bytes)).json()["faces"][0]
    assert set(bare) == {"box", "score", "landmarks"}


# ---- batch -----------------------------------------------------------------------------------------------------


def test_batch_one_result_each_bad_image_isolated(client: TestClient, astronaut_bytes: bytes) -> None:
    files = [
        ("images", ("a.jpg", astronaut_bytes, "image/jpeg")),
        ("images", ("notes.txt", b"just some text", "text/plain")),
        ("images", ("broken.jpg", astronaut_bytes[:4000], "image/jpeg")),
        ("images", ("empty.jpg", b"", "image/jpeg")),
        ("images", ("b.jpg", astronaut_bytes, "image/jpeg")),
    ]
    r = client.post("/v1/analyze/batch", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["path"] for x in results] == ["a.jpg", "notes.txt", "broken.jpg", "empty.jpg", "b.jpg"]
    assert [x.get("error_code") for x in results] == [
        None, "unsupported_media_type", "unreadable_image", "unreadable_image", None
    ]  # fmt: skip
    assert len(results[0]["faces"]) == 1 and results[0]["faces"] == results[4]["faces"]
    assert results[2]["width"] == 0 and "corrupt or truncated" in results[2]["error"]


def test_an_unexpected_failure_costs_one_part_or_one_frame_not_the_request(
    client: TestClient, astronaut_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    real = engine.analyze_bytes
    poison = astronaut_bytes + b"poison"  # still sniffed as a JPEG

    def flaky(data: bytes, *args: object, **kwargs: object) -> object:
        if data == poison:
            raise RuntimeError("a decoder bug")
        return real(data, *args, **kwargs)

    monkeypatch.setattr(engine, "analyze_bytes", flaky)
    files = [
        ("images", (n, d, "image/jpeg"))
        for n, d in (("a.jpg", astronaut_bytes), ("p.jpg", poison), ("b.jpg", astronaut_bytes))
    ]
    r = client.post("/v1/analyze/batch", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x.get("error_code") for x in results] == [None, "internal_error", None]
    assert "a decoder bug" not in results[1]["error"]  # no internals leak to the client
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_bytes(poison)
        assert ws.receive_json() == {
            "type": "error",
            "seq": 0,
            "error": {"code": "internal_error", "message": "internal error"},
        }
        ws.send_bytes(astronaut_bytes)
        assert ws.receive_json()["type"] == "result"  # the stream goes on


def test_batch_limits(make_client: Maker, astronaut_bytes: bytes) -> None:
    c = make_client(max_batch_images=2)
    three = [("images", (f"{i}.jpg", astronaut_bytes, "image/jpeg")) for i in range(3)]
    assert_error(c.post("/v1/analyze/batch", files=three), 413, "too_many_images")
    assert c.post("/v1/analyze/batch", files=three[:2]).status_code == 200
    assert_error(c.post("/v1/analyze/batch", files=[("other", ("x.jpg", astronaut_bytes, "image/jpeg"))]), 422,
                 "missing_image")  # fmt: skip
    assert_error(c.post("/v1/analyze/batch", content=astronaut_bytes, headers={"content-type": "image/jpeg"}), 415,
                 "unsupported_media_type")  # fmt: skip


# ---- models, health, errors, page ---------------------------------------------------------------------------------


def test_models_health_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready", "detector": "yunet", "models": [], "missing_tasks": ["age", "gender", "race", "attributes"]
    }  # fmt: skip
    assert client.get("/v1/models").json() == {
        "detector": "yunet", "models": [], "missing_tasks": ["age", "gender", "race", "attributes"]
    }  # fmt: skip


def test_not_ready_when_models_fail(
    make_client: Maker, astronaut_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("facelens.serve.engine.WARMUP_IMAGE", Path("/nonexistent/warmup.jpg"))
    c = make_client()
    assert c.get("/healthz").status_code == 200
    body = assert_error(c.get("/readyz"), 503, "not_ready")
    assert "warmup.jpg" in body["error"]["message"]
    r = c.post("/v1/analyze", files=jpeg(astronaut_bytes))
    assert_error(r, 503, "not_ready")
    assert r.headers["retry-after"] == "5"


def test_every_error_is_json(client: TestClient) -> None:
    assert_error(client.get("/no/such/page"), 404, "not_found")
    assert_error(client.get("/v1/analyze"), 405, "method_not_allowed")
    assert_error(client.post("/v1/analyze", content=b"{}", headers={"content-type": "application/json"}), 415,
                 "unsupported_media_type")  # fmt: skip
    assert_error(client.post("/v1/analyze", files={"other": ("a.jpg", b"x", "image/jpeg")}), 422, "missing_image")
    bad = b"--xyz\r\nContent-Disposition: form-data; name=image\r\n\r\nabc"  # never closed
    assert_error(client.post("/v1/analyze", content=bad, headers={"content-type": "multipart/form-data; boundary=xyz"}),
                 400, "bad_request")  # fmt: skip


def test_page_and_docs(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert '<script src="/static/app.js">' in r.text and 'id="faces-table"' in r.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    if swagger_assets_dir() is not None:  # the [serve] extra's swagger-ui-py: /docs works offline
        assert "/docs/assets/swagger-ui-bundle.js" in docs.text and "cdn." not in docs.text
        js = client.get("/docs/assets/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 100_000
    assert_error(client.get("/docs/assets/../../etc/passwd"), 404, "not_found")
    assert_error(client.get("/docs/assets/swagger-editor-bundle.js"), 404, "not_found")
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/analyze", "/v1/analyze/batch", "/v1/models", "/healthz", "/readyz"} <= set(paths)
    assert "multipart/form-data" in paths["/v1/analyze"]["post"]["requestBody"]["content"]


def test_static_files_use_no_external_asset() -> None:
    for f in STATIC.iterdir():
        text = f.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), f"external URL in {f.name}"
        assert "@import" not in text and "fonts.googleapis" not in text


# ---- API key -----------------------------------------------------------------------------------------------------


def test_api_key(make_client: Maker, astronaut_bytes: bytes) -> None:
    c = make_client(api_key="s3cret-key")
    for path in ("/v1/models",):
        r = c.get(path)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert_error(c.get(path, headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        assert_error(c.get(path, headers={"Authorization": "Basic s3cret-key"}), 401, "unauthorized")
        assert c.get(path, headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert c.get(path, headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
    assert_error(c.post("/v1/analyze", files=jpeg(astronaut_bytes)), 401, "unauthorized")
    assert_error(c.post("/v1/analyze/batch", files=[("images", ("a.jpg", astronaut_bytes, "image/jpeg"))]), 401,
                 "unauthorized")  # fmt: skip
    ok = c.post("/v1/analyze", files=jpeg(astronaut_bytes), headers={"X-API-Key": "s3cret-key"})
    assert ok.status_code == 200 and len(ok.json()["faces"]) == 1
    for open_path in ("/", "/healthz", "/readyz", "/static/app.js"):  # the page and probes need no key
        assert c.get(open_path).status_code == 200


# ---- CORS ----------------------------------------------------------------------------------------------------------


def test_cors_off_by_default(client: TestClient) -> None:
    r = client.get("/v1/models", headers={"Origin": "https://elsewhere.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    pre = client.options(
        "/v1/analyze",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers


def test_cors_configured(make_client: Maker) -> None:
    c = make_client(cors_origins=("https://app.example",))
    r = c.get("/v1/models", headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    pre = c.options(
        "/v1/analyze",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()
    other = c.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


# ---- WebSocket ---------------------------------------------------------------------------------------------------


def test_websocket_round_trip(client: TestClient, astronaut_bytes: bytes, expected_faces) -> None:  # noqa: ANN001
    with client.websocket_connect("/v1/stream?min_score=0.5") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["auth_required"] is False
        assert hello["missing_tasks"] == ["age", "gender", "race", "attributes"]
        for seq in range(3):
            ws.send_bytes(astronaut_bytes)
            msg = ws.receive_json()
            assert msg["type"] == "result" and msg["seq"] == seq, msg
            assert msg["result"]["faces"] == expected_faces and msg["server_ms"] >= 0
        ws.send_text("ping")  # ignored
        ws.send_bytes(b"not an image at all")
        err = ws.receive_json()
        assert err == {"type": "error", "seq": 3, "error": err["error"]}
        assert err["error"]["code"] == "unsupported_media_type"
        ws.send_bytes(astronaut_bytes[:3000])
        assert ws.receive_json()["error"]["code"] == "unreadable_image"
        ws.send_bytes(astronaut_bytes)  # the stream goes on after errors
        assert ws.receive_json()["seq"] == 5


def test_websocket_api_key(make_client: Maker, astronaut_bytes: bytes) -> None:
    c = make_client(api_key="k3y")
    with c.websocket_connect("/v1/stream") as ws:
        assert ws.receive_json()["auth_required"] is True
        ws.send_text(json.dumps({"type": "auth", "api_key": "wrong"}))
        assert ws.receive_json()["error"]["code"] == "unauthorized"
        with pytest.raises(WebSocketDisconnect) as ei:
            ws.receive_json()
        assert ei.value.code == 1008
    with c.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_text(json.dumps({"type": "auth", "api_key": "k3y"}))
        assert ws.receive_json() == {"type": "auth", "ok": True}
        ws.send_bytes(astronaut_bytes)
        assert ws.receive_json()["type"] == "result"
    with c.websocket_connect("/v1/stream", headers={"X-API-Key": "k3y"}) as ws:
        assert ws.receive_json()["auth_required"] is False
        ws.send_bytes(astronaut_bytes)
        assert ws.receive_json()["type"] == "result"


def test_websocket_origin_and_options(make_client: Maker) -> None:
    c = make_client(cors_origins=("https://app.example",))
    with pytest.raises(WebSocketDisconnect) as ei:
        with c.websocket_connect("/v1/stream", headers={"Origin": "https://evil.example"}) as ws:
            ws.receive_json()
    assert ei.value.code == 1008
    for origin in ("http://testserver", "https://app.example"):
        with c.websocket_connect("/v1/stream", headers={"Origin": origin}) as ws:
            assert ws.receive_json()["type"] == "hello"
    with c.websocket_connect("/v1/stream?min_score=abc") as ws:
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["error"]["code"] == "invalid_parameter"
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()
