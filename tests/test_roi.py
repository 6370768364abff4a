"""The ROI family end to end, on a real full-reference corpus (`tests/fr_pairs.py`).

Every check recomputes the expected value independently: from planes decoded here with
PyAV, from FFmpeg's psnr filter, from scikit-image's SSIM, from the maps salmat wrote."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

import onnx_graphs as graphs
import salmat
from conftest import structural_similarity
from fr_pairs import ffmpeg_psnr_y
from salmat.decode import clip_indices
from salmat.quality import roi_size
from salmat.values import QUALITY_COLUMNS, ClipResult

ROI = ["roi_psnr_y", "roi_ssim_y", "bg_psnr_y", "bg_ssim_y"]
PLAIN = ["psnr_y", "ssim_y"]
SAMPLES = 3


def _table(pairs) -> pd.DataFrame:
    return pd.DataFrame({"dis": [p.dis for p in pairs], "ref": [p.ref for p in pairs],
                         "crf": [p.crf or 0 for p in pairs]})


def _run(table: pd.DataFrame, **settings) -> tuple[pd.DataFrame, salmat.RunReport]:
    base = {"path_column": "dis", "reference_column": "ref", "frame_samples": SAMPLES, "clip_timeout": None,
            "quiet": True}
    return salmat.materialize(table, **{**base, **settings})


def _lumas(path: str, indices: list[int], size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Luma planes at `indices`, decoded here with PyAV (scaled with swscale bicubic to `size`)."""
    wanted, out = set(indices), {}
    with av.open(path) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                if size is not None and (frame.width, frame.height) != size:
                    frame = frame.reformat(width=size[0], height=size[1], interpolation="BICUBIC")
                assert frame.format.name == "yuv420p"
                out[index] = frame.to_ndarray()[: frame.height]  # the Y plane as stored (no range conversion)
            if index >= max(indices):
                break
    return [out[i] for i in indices]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return min(10 * math.log10(255**2 / mse), 60.0) if mse else 60.0


def _frames(path: str) -> int:
    with av.open(path) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


@pytest.fixture(scope="module")
def corpus_run(fr_corpus):
    table, report = _run(_table(fr_corpus))
    return fr_corpus, table, report


def test_every_pair_is_ok_and_quality_falls_with_crf(corpus_run):
    pairs, table, report = corpus_run
    assert len(pairs) >= 10 and report.ok == len(pairs), table["saliency_error"].tolist()
    assert table["roi_config"].eq("weights=ref;fraction=0.2;pooling=mean").all()
    for column in QUALITY_COLUMNS:
        assert table[column].notna().all(), column
    encoded = table[table["crf"] > 0].copy()
    encoded["clip"] = encoded["ref"].map(lambda p: Path(p).name)
    for _, group in encoded[~encoded["dis"].str.contains("half")].groupby("clip"):
        ordered = group.sort_values("crf")
        assert ordered["psnr_y"].is_monotonic_decreasing and ordered["ssim_y"].is_monotonic_decreasing


def test_psnr_is_the_psnr_of_the_decoded_planes(corpus_run):
    pairs, table, _ = corpus_run
    for pair, (_, row) in zip(pairs, table.iterrows(), strict=True):
        indices = clip_indices(_frames(pair.dis), SAMPLES)
        refs = _lumas(pair.ref, indices)
        size = (refs[0].shape[1], refs[0].shape[0])
        expected = np.mean([_psnr(d, r) for d, r in zip(_lumas(pair.dis, indices, size), refs, strict=True)])
        assert row["psnr_y"] == pytest.approx(expected, abs=1e-6), pair.dis


def test_psnr_equals_ffmpeg_psnr_filter_per_frame(fr_corpus, tmp_path):
    """Per frame (`salmat frames`), including the half-size clip that FFmpeg scales with bicubic."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("no ffmpeg binary on PATH")
    for pair in [p for p in fr_corpus if p.half or p.crf == 44][:3]:
        frames, report = salmat.frame_table(pair.dis, pair.ref, quiet=True)
        assert report.ok == len(frames)
        size = None
        if pair.half:
            ref = _lumas(pair.ref, [0])[0]
            size = (ref.shape[1], ref.shape[0])
        theirs = ffmpeg_psnr_y(pair.dis, pair.ref, size)
        ours = frames.sort_values("frame_index")["psnr_y"].to_numpy()
        assert len(ours) == len(theirs[: len(ours)]) and np.max(np.abs(ours - theirs[: len(ours)])) <= 0.01


def test_ssim_equals_scikit_image_per_frame(fr_corpus):
    pair = next(p for p in fr_corpus if p.crf == 37 and "carphone" in p.dis)
    frames, _ = salmat.frame_table(pair.dis, pair.ref, quiet=True)
    indices = frames["frame_index"].tolist()
    for ssim, d, r in zip(frames["ssim_y"], _lumas(pair.dis, indices), _lumas(pair.ref, indices), strict=True):
        expected = structural_similarity(d.astype(np.float64), r.astype(np.float64), gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False, data_range=255)
        assert abs(ssim - expected) <= 1e-4


def test_frames_rows_carry_index_time_and_saliency(fr_corpus, tmp_path):
    pair = fr_corpus[0]
    out = tmp_path / "frames.jsonl"
    report = salmat.frame_table(pair.dis, out=str(out), quiet=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert report.ok == len(rows) == _frames(pair.dis)
    assert [r["frame_index"] for r in rows] == list(range(len(rows)))
    with av.open(pair.dis) as container:
        rate = container.streams.video[0].average_rate
    assert rows[1]["pts_time"] == pytest.approx(1 / rate, rel=1e-3)
    assert all(0 <= r["saliency_mean"] <= 1 for r in rows) and "psnr_y" not in rows[0]


def test_roi_and_background_recombine_to_the_frame_mse(fr_corpus):
    pair = next(p for p in fr_corpus if p.crf == 30 and "bikes_crf" in p.dis)
    frames, _ = salmat.frame_table(pair.dis, pair.ref, quiet=True)
    n = np.prod(_lumas(pair.ref, [0])[0].shape)
    k = roi_size(int(n), 0.2)

    def mse(psnr: pd.Series) -> np.ndarray:
        return 255**2 / 10 ** (psnr.to_numpy() / 10)

    combined = (k * mse(frames["roi_psnr_y"]) + (n - k) * mse(frames["bg_psnr_y"])) / n
    np.testing.assert_allclose(combined, mse(frames["psnr_y"]), rtol=1e-9)
    assert (frames["roi_psnr_y"] != frames["bg_psnr_y"]).all()


def test_a_constant_map_gives_the_plain_values_exactly(fr_corpus, tmp_path):
    """A test model whose map is constant weights every pixel alike: sw_* are psnr_y/ssim_y, bit for bit."""
    model = graphs.save(graphs.conv_sigmoid(np.zeros((1, 3, 3, 3), np.float32), np.zeros(1, np.float32)),
                        tmp_path / "flat.onnx")
    table, report = _run(_table(fr_corpus[:4]), model_path=str(model))
    assert report.ok == 4
    assert table["sw_psnr_y"].tolist() == table["psnr_y"].tolist()
    assert table["sw_ssim_y"].tolist() == table["ssim_y"].tolist()


def test_weighted_psnr_recomputed_from_the_written_maps(fr_corpus, tmp_path):
    maps = tmp_path / "maps"
    table, report = _run(_table(fr_corpus), maps_out=str(maps))
    index = [json.loads(line) for line in (maps / "index.jsonl").read_text().splitlines()]
    assert report.ok == len(index) == len(fr_corpus)
    by_source = {entry["source"]: entry for entry in index}
    for _, row in table.iterrows():
        entry = by_source[row["dis"]]
        assert entry["reference"] == row["ref"]
        with np.load(maps / entry["file"]) as data:
            frames, weights = data["frames"].tolist(), data["ref_maps"].astype(np.float64)
            assert data["maps"].dtype == np.float16 and data["maps"].shape[0] == len(frames) == entry["frames"].__len__()
        refs = _lumas(row["ref"], frames)
        size = (refs[0].shape[1], refs[0].shape[0])
        values = []
        for w, d, r in zip(weights, _lumas(row["dis"], frames, size), refs, strict=True):
            err = (d.astype(np.float64) - r) ** 2
            values.append(min(10 * math.log10(255**2 / (np.sum(w * err) / np.sum(w))), 60.0))
        assert abs(np.mean(values) - row["sw_psnr_y"]) <= 0.02, row["dis"]


def test_another_roi_fraction_is_never_served_from_the_cache(fr_corpus, tmp_path):
    cache = str(tmp_path / "cache.sqlite")
    table = _table(fr_corpus[:3])
    first, one = _run(table, cache=cache)
    other, two = _run(table, cache=cache, roi_fraction=0.05)
    again, three = _run(table, cache=cache)
    assert one.audit["cache"]["stored"] == 3 and two.audit["cache"]["hits"] == 0
    assert three.audit["cache"]["hits"] == 3
    assert other["roi_config"].eq("weights=ref;fraction=0.05;pooling=mean").all()
    for column in ROI:
        assert (other[column] != first[column]).all(), column
    for column in PLAIN + ["saliency_mean", "sw_psnr_y"]:
        assert other[column].tolist() == first[column].tolist(), column
    pd.testing.assert_frame_equal(again, first)


def test_pooling_and_weights_change_provenance(fr_corpus):
    table = _table(fr_corpus[:2])
    base, _ = _run(table)
    harmonic, _ = _run(table, quality_pooling="min", weights_from="dis")
    assert harmonic["roi_config"].eq("weights=dis;fraction=0.2;pooling=min").all()
    assert (harmonic["psnr_y"] <= base["psnr_y"] + 1e-12).all()
    assert (harmonic["sw_psnr_y"] != base["sw_psnr_y"]).all()


def test_bad_references_are_row_statuses(fr_corpus, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    short = fr_corpus[0].dis  # 12 frames: too short for the 120-frame carphone clip sampled to its end
    full = next(p for p in fr_corpus if p.crf is None)
    rows = pd.DataFrame({"dis": [full.dis, full.dis, full.dis, full.dis, full.dis],
                         "ref": [full.ref, str(tmp_path / "gone.mp4"), str(garbage), short, None]})
    table, report = _run(rows)
    assert table["saliency_status"].tolist() == ["ok", "missing-source", "decode-failed", "decode-failed",
                                                 "missing-source"]
    assert table["saliency_error"][1:].str.startswith("reference: ").all(), table["saliency_error"].tolist()
    assert "too short" in table["saliency_error"][3]
    assert table["psnr_y"][1:].isna().all() and table["roi_config"][1:].isna().all()
    assert report.exit_code == 1


def test_the_pool_engine_carries_the_values(fr_corpus):
    table = _table(fr_corpus[:3])
    inline, _ = _run(table)
    pooled, report = _run(table, workers=2, clip_timeout=600)
    assert report.ok == 3
    pd.testing.assert_frame_equal(pooled, inline)


def test_results_travel_as_table_cells():
    """What the Ray engine carries per clip: the payload round-trips every value, NaN included."""
    result = ClipResult("ok", quality={"psnr_y": 31.5, "saliency_shift_cc": float("nan")},
                        frame_quality={3: {"ssim_y": 0.9}}, maps_file="a.npz")
    back = ClipResult("ok").with_frame_payload(result.frame_payload())
    assert back.quality["psnr_y"] == 31.5 and math.isnan(back.quality["saliency_shift_cc"])
    assert back.frame_quality == {3: {"ssim_y": 0.9}} and back.maps_file == "a.npz"


def test_roi_settings_need_a_reference_column(tmp_path):
    with pytest.raises(salmat.SalmatError, match="roi_fraction only applies with reference_column"):
        salmat.materialize(pd.DataFrame({"src": ["a.mp4"]}), roi_fraction=0.1)


def test_columns_are_renamed_and_omitted_like_the_others(fr_corpus):
    table, _ = _run(_table(fr_corpus[:1]), column_prefix="v1_", saliency_shift_cc_column="", roi_config_column="cfg")
    assert "v1_psnr_y" in table and "v1_cfg" in table and "v1_saliency_shift_cc" not in table
    assert "saliency_shift_cc" not in table and "psnr_y" not in table


@pytest.mark.ray
def test_the_ray_engine_carries_the_values(fr_corpus):
    """Specs (with their reference) and results (with the ROI values) cross Ray as table cells."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test,ray]')")
    import ray_helpers

    ray_helpers.start_ray()
    table = _table(fr_corpus[:2])
    inline, _ = _run(table)
    rayed, report = _run(table, engine="ray")
    assert report.ok == 2
    pd.testing.assert_frame_equal(rayed, inline)


def test_ten_bit_raw_pairs_use_peak_1023(tmp_path):
    """10-bit raw .yuv: PSNR with peak 1023 and the 72 dB cap, per frame, against NumPy here."""
    from synthetic_clips import write_raw_yuv

    ref = write_raw_yuv(tmp_path / "ref_96x64_10bit.yuv", 96, 64, frames=3, bit_depth=10)
    samples = np.fromfile(ref, dtype="<u2").copy()
    frame = 96 * 64 * 3 // 2
    luma = np.zeros(samples.size, dtype=bool)
    for i in range(3):
        luma[i * frame: i * frame + 96 * 64] = True
    rng = np.random.default_rng(7)
    noisy = samples.astype(np.int64) + np.where(luma, rng.integers(-20, 21, samples.size), 0)
    dis = tmp_path / "dis_96x64_10bit.yuv"
    np.clip(noisy, 0, 1023).astype("<u2").tofile(dis)
    rows = pd.DataFrame({"dis": [str(dis), str(ref)], "ref": [str(ref), str(ref)], "f": [1, 1]})
    table, report = _run(rows, per_frame=True, frame_column="f", frame_samples=8)
    assert report.ok == 2
    d = np.fromfile(dis, dtype="<u2")[frame: frame + 96 * 64].astype(np.float64)
    r = samples[frame: frame + 96 * 64].astype(np.float64)
    assert table["psnr_y"][0] == pytest.approx(10 * math.log10(1023**2 / np.mean((d - r) ** 2)), abs=1e-9)
    assert table["psnr_y"][1] == 72.0 and table["ssim_y"][1] == 1.0


def test_frames_command_writes_stdout_and_says_what_to_do(fr_corpus, tmp_path):
    from conftest import run_cli

    pair = fr_corpus[2]
    done = run_cli("frames", pair.dis, pair.ref, "--out", "-", "--format", "csv", "--roi-fraction", "0.1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 + _frames(pair.dis) and "psnr_y" in lines[0] and "fraction=0.1" in lines[1]
    refused = run_cli("frames", pair.dis, "--out", "-", "--roi-fraction", "0.1")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--roi-fraction only applies with a reference clip" in refused.stderr


def test_frame_table_is_never_shadowed_by_its_module():
    import importlib

    importlib.import_module("salmat.frames_command")
    importlib.import_module("salmat.frames")
    assert callable(salmat.frame_table)
