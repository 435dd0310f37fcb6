"""Tiles, executors, resume and worker faults (core/scale/tiles.py, core/scale/executors.py).

Real parts throughout: the session's tiny sample data and model, local Dask clusters on
127.0.0.1, real kills (SIGKILL of the command line, of a Dask worker process).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from segexplain.core.bundle.reader import Bundle, read_table
from segexplain.core.engine.records import ImageRecord, PatchTable
from segexplain.core.engine.settings import EngineSettings
from segexplain.core.errors import ClusterError, ConfigurationError, DeviceError
from segexplain.core.progress import Progress
from segexplain.core.scale.executors import (
    DaskExecutor,
    InProcessExecutor,
    make_executor,
)
from segexplain.core.scale.run import work_dir_for
from segexplain.core.scale.tiles import (
    load_tile,
    read_tile_meta,
    run_tiles,
    save_tile,
    tile_done,
    tile_path,
)
from shapely.geometry import box

PATCH = 64
ENGINE = EngineSettings(patch_size=PATCH, iou_convention="zero", backend="auto")
ENGINE_COLUMNS = ("image", "region", "split", "row_off", "col_off", "height", "width",
                  "iou", "accuracy", "precision", "recall", "label_frac", "pred_frac",
                  "entropy", "confidence", "uncertain_frac")


def cli(*args, timeout=600):
    cmd = [sys.executable, "-m", "segexplain.core.cli", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stderr[-3000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def train_pairs(tiny_run):
    from segexplain.core.data.datasets import discover

    return discover(tiny_run.data / "train", None, require_labels=True)


def assert_same_table(a: PatchTable, b: PatchTable) -> None:
    assert list(a.columns) == list(b.columns)
    for k in a.columns:
        x, y = np.asarray(a.columns[k]), np.asarray(b.columns[k])
        assert x.dtype == y.dtype, k
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=k)
        else:
            assert (x == y).all(), k
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-4, atol=1e-5)
    assert a.embeddings.dtype == b.embeddings.dtype == np.float32
    assert len(a.footprints) == len(b.footprints)
    assert all(f.equals(g) for f, g in zip(a.footprints, b.footprints, strict=True))
    assert a.crs_wkt == b.crs_wkt and a.iou_convention == b.iou_convention
    assert sorted(a.thumbnails) == sorted(b.thumbnails)
    for k in a.thumbnails:
        assert (a.thumbnails[k] == b.thumbnails[k]).all(), k
    assert [im.name for im in a.images] == [im.name for im in b.images]
    assert [im.counts for im in a.images] == [im.counts for im in b.images]
    for ia, ib in zip(a.images, b.images, strict=True):
        for kind in ("prediction", "confusion"):
            assert (ia.to_dict()[kind] is None) == (ib.to_dict()[kind] is None)
            if ia.to_dict()[kind]:
                assert_same_raster(Path(ia.to_dict()[kind]), Path(ib.to_dict()[kind]))


def assert_same_raster(p: Path, q: Path) -> None:
    with rasterio.open(p) as a, rasterio.open(q) as b:
        assert a.crs == b.crs and a.transform == b.transform and a.shape == b.shape
        assert (a.read() == b.read()).all(), f"{p} != {q}"


def assert_same_bundle(a: Path, b: Path) -> None:
    """Same engine output (columns, footprints, embeddings, rasters), same latent space."""
    ba, bb = Bundle(a), Bundle(b)
    assert len(ba) == len(bb) > 0
    pa, pb = ba.patches, bb.patches
    for k in ENGINE_COLUMNS:
        if pa[k].dtype.kind == "f":
            np.testing.assert_allclose(pa[k], pb[k], rtol=1e-5, atol=1e-6, equal_nan=True,
                                       err_msg=k)
        else:
            assert (pa[k] == pb[k]).all(), k
    ga, gb = read_table(a, "patches", ["geom"])["geom"], read_table(b, "patches", ["geom"])["geom"]
    assert list(ga) == list(gb)
    np.testing.assert_allclose(ba.array("embeddings").astype(np.float32),
                               bb.array("embeddings").astype(np.float32), rtol=2e-3, atol=1e-3)
    la, lb = ba.array("latent"), bb.array("latent")
    np.testing.assert_allclose(la[:, :2], lb[:, :2], rtol=1e-3, atol=1e-3 * np.abs(la).max())
    for name in ("thumbs_image", "thumbs_label", "thumbs_pred"):
        assert ba.has_array(name) == bb.has_array(name), name
        if ba.has_array(name):
            assert (ba.array(name) == bb.array(name)).all(), name
    assert ba.manifest["stats"]["overall"] == bb.manifest["stats"]["overall"]
    for im in ba.manifest["images"]:
        for kind in ("prediction", "confusion", "est_iou"):
            ra, rb = ba.raster(im["name"], kind), bb.raster(im["name"], kind)
            assert (ra is None) == (rb is None), (im["name"], kind)
            if ra is not None and kind != "est_iou":
                assert ra.is_relative_to(ba.path), ra  # the bundle holds its own rasters
                assert_same_raster(ra, rb)


# -- tile files (fast) ------------------------------------------------------------------

def _table(n: int = 3) -> PatchTable:
    rec = ImageRecord(name="a1", path="/x/a1.tif", label=None, region="a", split="val",
                      crs_wkt="EPSG:32633", transform=(0.5, 0, 500000, 0, -0.5, 5300000),
                      width=64, height=32, prediction="/w/rasters/a1_pred.tif",
                      counts={"tp": 3, "fp": 1, "fn": 0, "tn": 9})
    rng = np.random.default_rng(0)
    return PatchTable(
        columns={"patch_id": np.arange(n), "image": np.array(["a1"] * n),
                 "region": np.array(["a"] * n), "iou": np.array([0.5, np.nan, 1.0][:n])},
        embeddings=rng.normal(size=(n, 8)).astype(np.float32),
        footprints=[box(i, 0, i + 1, 1) for i in range(n)], crs_wkt="EPSG:32633",
        images=[rec], iou_convention="exclude",
        thumbnails={"image": rng.integers(0, 255, (n, 4, 4, 3), dtype=np.uint8)})


def test_tile_file_roundtrip_without_pickle(tmp_path):
    t = _table()
    path = tile_path(tmp_path, "a1")
    save_tile(path, t, key="k1")
    assert [p.name for p in path.parent.iterdir()] == ["a1.npz"]  # no temporary left
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert all(z[k].dtype != object for k in z.files)
    back = load_tile(path)
    assert back is not None
    for k in t.columns:
        np.testing.assert_array_equal(back.columns[k], t.columns[k])
    assert back.columns["image"].dtype.kind == "U"
    np.testing.assert_array_equal(back.embeddings, t.embeddings)
    assert all(f.equals(g) for f, g in zip(back.footprints, t.footprints, strict=True))
    np.testing.assert_array_equal(back.thumbnails["image"], t.thumbnails["image"])
    im = back.images[0]
    assert im.counts == t.images[0].counts and im.transform == t.images[0].transform
    assert im.prediction == str(tmp_path / "rasters" / "a1_pred.tif")  # by name in work dir
    assert back.iou_convention == "exclude"
    assert read_tile_meta(path)["key"] == "k1"


def test_tile_done_needs_key_and_rasters(tmp_path):
    path = tile_path(tmp_path, "a1")
    assert not tile_done(path, "k1")
    save_tile(path, _table(), key="k1")
    assert not tile_done(path, "k1")  # its prediction raster is missing
    (tmp_path / "rasters").mkdir()
    (tmp_path / "rasters" / "a1_pred.tif").write_bytes(b"x")
    assert tile_done(path, "k1")
    assert not tile_done(path, "other settings")
    path.write_bytes(b"truncated")
    assert not tile_done(path, "k1")


def test_empty_tile_roundtrip(tmp_path):
    path = tile_path(tmp_path, "nodata")
    save_tile(path, None, key="k")
    assert load_tile(path) is None and tile_done(path, "k")


def test_executor_options():
    assert isinstance(make_executor(), InProcessExecutor)
    with pytest.raises(ConfigurationError, match="exclude each other"):
        make_executor(workers=2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigurationError, match="--workers 0"):
        make_executor(workers=0)
    with pytest.raises(ConfigurationError, match="tcp://HOST"):
        make_executor(scheduler="127.0.0.1:8786")
    ex = make_executor(workers=2)
    assert isinstance(ex, DaskExecutor) and ex.threads >= 1 and ex.client is None
    assert work_dir_for(Path("/a/b.segx")) == Path("/a/b.segx.work")


def test_gpu_workers_get_one_device_each():
    from segexplain.core.scale.executors import gpu_worker_options

    opts = gpu_worker_options(3, ["0", "1"])
    assert [o["env"]["CUDA_VISIBLE_DEVICES"] for o in opts.values()] == ["0", "1", "0"]
    assert all(o["resources"] == {"GPU": 1} and o["nthreads"] == 1 for o in opts.values())
    with pytest.raises(DeviceError, match="no CUDA device"):
        gpu_worker_options(1, [])


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_local_gpu_cluster_runs_tiles(tiny_run, tmp_path):
    pairs = train_pairs(tiny_run)[:2]
    with DaskExecutor(workers=1) as ex:
        assert ex.gpus and "GPU" in ex.describe()
        info = ex.client.scheduler_info()["workers"].values()
        assert all(w["resources"].get("GPU") == 1 for w in info)
        got = run_tiles(pairs, tiny_run.model, replace(ENGINE, backend="torch"), executor=ex,
                        work_dir=tmp_path / "w")
    assert sorted(set(got.columns["image"].tolist())) == sorted(p.name for p in pairs)
    assert np.isfinite(got.embeddings).all()


def test_unreachable_scheduler_is_one_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ex = DaskExecutor(scheduler=f"tcp://127.0.0.1:{port}", timeout=2)
    with pytest.raises(ClusterError, match=f"127.0.0.1:{port}"):
        ex.start()


# -- in-process tiles (real engine, seconds) --------------------------------------------

def test_tiles_in_process_equal_engine_and_resume(tiny_run, tmp_path):
    from segexplain.core.engine.inference import analyze_images

    pairs = train_pairs(tiny_run)
    ref = analyze_images(pairs, tiny_run.model, ENGINE, raster_dir=tmp_path / "ref")
    work = tmp_path / "x.segx.work"
    got = run_tiles(pairs, tiny_run.model, ENGINE, work_dir=work)
    assert_same_table(got, ref)
    assert all(Path(im.prediction).parent == work / "rasters" for im in got.images)

    # resume: every tile is read back, none recomputed (same file, same mtime)
    before = {p.name: p.stat().st_mtime_ns for p in (work / "tiles").glob("*.npz")}
    assert len(before) == len(pairs)
    events: list[str] = []
    progress = Progress("none")
    progress.log = lambda msg, level="info": events.append(msg)  # type: ignore[method-assign]
    again = run_tiles(pairs, tiny_run.model, ENGINE, work_dir=work, resume=True,
                      progress=progress)
    assert {p.name: p.stat().st_mtime_ns for p in (work / "tiles").glob("*.npz")} == before
    assert any(f"{len(pairs)} of {len(pairs)} tile(s) already done" in e for e in events)
    assert_same_table(again, ref)

    # other settings: the key differs, so the tiles are recomputed
    changed = run_tiles(pairs[:2], tiny_run.model, replace(ENGINE, iou_convention="one"),
                        work_dir=work, resume=True)
    assert changed.iou_convention == "one"
    assert (work / "tiles" / f"{pairs[0].name}.npz").stat().st_mtime_ns != \
        before[f"{pairs[0].name}.npz"]


def test_tiles_match_engine_on_mixed_images(tiny_run, tmp_path):
    """A mostly-nodata image (skipped), an unlabelled one, one in another CRS."""
    from segexplain.core.data.datasets import ImagePair
    from segexplain.core.engine.inference import analyze_images

    first = train_pairs(tiny_run)[0]
    with rasterio.open(first.image) as src:
        data, profile = src.read(), src.profile
    blank = tmp_path / "blank1.tif"  # valid only in a corner smaller than half a patch
    corner = np.zeros_like(data)
    corner[:, :10, :10] = np.maximum(data[:, :10, :10], 1)
    with rasterio.open(blank, "w", **{**profile, "nodata": 0}) as dst:
        dst.write(corner)
    moved = {"crs": "EPSG:3857", "transform": rasterio.Affine(0.3, 0, 1.0e6, 0, -0.3, 6.0e6)}
    other_crs, other_label = tmp_path / "moved1.tif", tmp_path / "moved1_label.tif"
    with rasterio.open(other_crs, "w", **{**profile, **moved}) as dst:
        dst.write(data)
    with rasterio.open(first.label) as src:
        label, label_profile = src.read(), src.profile
    with rasterio.open(other_label, "w", **{**label_profile, **moved}) as dst:
        dst.write(label)
    pairs = [first,
             ImagePair(blank, None, "blank", "new", "blank1"),
             ImagePair(other_crs, other_label, "moved", "val", "moved1")]
    ref = analyze_images(pairs, tiny_run.model, ENGINE, raster_dir=tmp_path / "ref")
    logs: list[str] = []
    progress = Progress("none")
    progress.log = lambda msg, level="info": logs.append(msg)  # type: ignore[method-assign]
    got = run_tiles(pairs, tiny_run.model, ENGINE, work_dir=tmp_path / "w", progress=progress)
    assert "blank1" not in set(got.columns["image"].tolist())
    assert any("blank1.tif: no patch has enough valid pixels" in m for m in logs), logs
    assert_same_table(got, ref)

    # an unlabelled image among labelled ones: zero label thumbnails, NaN label columns
    mixed = run_tiles([first, ImagePair(first.image, None, "copy", "new", "unlabelled1")],
                      tiny_run.model, ENGINE, work_dir=tmp_path / "w2")
    own = mixed.columns["image"] == first.name
    assert own.sum() == (ref.columns["image"] == first.name).sum() == (~own).sum()
    ref_rows = ref.columns["image"] == first.name
    assert (mixed.thumbnails["label"][own] == ref.thumbnails["label"][ref_rows]).all()
    assert mixed.thumbnails["label"][own].any() and not mixed.thumbnails["label"][~own].any()
    assert np.isnan(mixed.columns["label_frac"][~own]).all()
    np.testing.assert_allclose(mixed.embeddings[~own], mixed.embeddings[own], rtol=1e-5)
    # the in-process engine gives the same on that mix (its label thumbnails stay aligned)
    engine = analyze_images([first, ImagePair(first.image, None, "copy", "new", "unlabelled1")],
                            tiny_run.model, ENGINE, raster_dir=tmp_path / "mixed")
    assert_same_table(mixed, engine)


def test_scaled_run_keeps_the_work_folder_only_on_failure(tiny_run, tmp_path):
    from argparse import Namespace

    from segexplain.core.model.models import load_model
    from segexplain.core.scale.run import scaled_run

    args = Namespace(out=tmp_path / "x.segx", workers=None, scheduler=None, resume=False)
    with scaled_run(args, Progress("none")) as run:
        assert run is None  # no option: the command runs as before, no work folder
    args.resume = True
    model, pairs = load_model(tiny_run.model), train_pairs(tiny_run)[:2]
    work, bundle_rasters = work_dir_for(args.out), tmp_path / "partial" / "rasters"
    with pytest.raises(RuntimeError, match="analytics failed"):
        with scaled_run(args, Progress("none")) as run:
            assert run is not None
            table = run.analyze(pairs, model, ENGINE, bundle_rasters)
            for im in table.images:  # the bundle's rasters are its own files
                assert Path(im.prediction).parent == bundle_rasters
                assert os.path.samefile(im.prediction, work / "rasters" / Path(im.prediction).name)
            raise RuntimeError("analytics failed")
    assert len(list((work / "tiles").glob("*.npz"))) == 2  # kept for --resume
    with scaled_run(args, Progress("none")) as run:
        assert run is not None
        run.analyze(pairs, model, ENGINE, bundle_rasters)
    assert not work.exists()  # removed after success


# -- command line and clusters (slow) -------------------------------------------------

@pytest.fixture(scope="module")
def reference_bundle(tiny_run, tmp_path_factory):
    """An in-process analysis bundle of the training data (no scale-out options)."""
    out = tmp_path_factory.mktemp("ref") / "ref.segx"
    cli("analyze", "--data", tiny_run.data / "train", "--model", tiny_run.model,
        "--out", out, "--patch-size", PATCH, "--progress", "none")
    return out


@pytest.mark.slow
def test_local_cluster_gives_the_same_bundle(tiny_run, reference_bundle, tmp_path):
    out = tmp_path / "dask.segx"
    events = cli("analyze", "--data", tiny_run.data / "train", "--model", tiny_run.model,
                 "--out", out, "--patch-size", PATCH, "--workers", 2, "--progress", "jsonl")
    logs = [e["message"] for e in events if e["event"] == "log"]
    assert any("local Dask cluster (2 worker(s))" in m for m in logs), logs
    assert any("10 tile(s) computed, 0 resumed" in m for m in logs), logs
    assert not work_dir_for(out).exists()  # removed after success
    assert_same_bundle(out, reference_bundle)


@pytest.mark.slow
def test_sigkilled_run_resumes_without_recomputing(tiny_run, reference_bundle, tmp_path):
    out = tmp_path / "resume.segx"
    args = [sys.executable, "-m", "segexplain.core.cli", "analyze", "--data",
            str(tiny_run.data / "train"), "--model", str(tiny_run.model), "--out", str(out),
            "--patch-size", str(PATCH), "--resume", "--progress", "jsonl"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            ev = json.loads(line)
            if ev.get("event") == "progress" and ev["stage"] == "infer" and ev["done"] >= 1:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    tiles = work_dir_for(out) / "tiles"
    done = sorted(p.stem for p in tiles.glob("*.npz"))
    assert 1 <= len(done) <= 10 and not out.exists()
    mtimes = {n: (tiles / f"{n}.npz").stat().st_mtime_ns for n in done}

    seen: dict[str, int] = {}
    events = []
    with open(tmp_path / "stderr.txt", "w") as err:
        resumed = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        assert resumed.stdout is not None
        for line in resumed.stdout:
            events.append(json.loads(line))
            if events[-1].get("event") == "progress" and events[-1]["stage"] == "infer":
                seen = {n: (tiles / f"{n}.npz").stat().st_mtime_ns for n in done}
        code = resumed.wait(timeout=600)
    assert code == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    logs = [e["message"] for e in events if e["event"] == "log"]
    assert any(f"resume: {len(done)} of 10 tile(s) already done" in m for m in logs), logs
    assert any(f"{10 - len(done)} tile(s) computed, {len(done)} resumed" in m
               for m in logs), logs
    assert seen == mtimes  # after the last tile: the finished ones were not rewritten
    assert not work_dir_for(out).exists()
    assert_same_bundle(out, reference_bundle)


@pytest.mark.slow
def test_killed_dask_worker_still_completes_every_tile(tiny_run, tmp_path):
    import psutil
    from segexplain.core.engine.inference import analyze_images

    pairs = train_pairs(tiny_run)[:6]

    class KillOnFirstTile(Progress):
        def __init__(self, ex: DaskExecutor) -> None:
            super().__init__("none")
            self.ex, self.killed, self.in_flight = ex, None, []

        def advance(self, n: int = 1) -> None:
            super().advance(n)
            if self.killed is None and self.stage_name == "infer" and self.done >= 1:
                busy = {a: list(k) for a, k in self.ex.client.processing().items() if k}
                if not busy:
                    return  # nothing in flight right now; try at the next tile
                addr = max(busy, key=lambda a: len(busy[a]))
                pid = self.ex.worker_pids()[addr]
                self.in_flight = busy[addr]
                psutil.Process(pid).kill()
                self.killed = pid

    with DaskExecutor(workers=2) as ex:
        before = set(ex.worker_pids().values())
        progress = KillOnFirstTile(ex)
        got = run_tiles(pairs, tiny_run.model, ENGINE, executor=ex,
                        work_dir=tmp_path / "w", progress=progress)
        assert progress.killed in before and progress.in_flight
        deadline = time.monotonic() + 30
        while psutil.pid_exists(progress.killed) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not psutil.pid_exists(progress.killed)
    assert sorted(set(got.columns["image"].tolist())) == sorted(p.name for p in pairs)
    ref = analyze_images(pairs, tiny_run.model, ENGINE, raster_dir=tmp_path / "ref")
    assert_same_table(got, ref)


@pytest.mark.slow
def test_estimate_resume_option_gives_the_same_bundle(tiny_run, reference_bundle, tmp_path):
    common = ["--data", tiny_run.data / "new", "--reference", reference_bundle,
              "--model", tiny_run.model, "--encoder-only", "--progress", "none"]
    cli("estimate", *common, "--out", tmp_path / "plain.segx")
    cli("estimate", *common, "--out", tmp_path / "tiled.segx", "--resume")
    assert not work_dir_for(tmp_path / "tiled.segx").exists()
    assert_same_bundle(tmp_path / "tiled.segx", tmp_path / "plain.segx")
    est = Bundle(tmp_path / "tiled.segx")
    np.testing.assert_allclose(est.patches["est_iou"], Bundle(tmp_path / "plain.segx")
                               .patches["est_iou"], atol=1e-4, equal_nan=True)
