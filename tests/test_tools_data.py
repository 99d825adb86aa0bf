"""The dataset tools (catalogue, preprocess, bench_pipeline) and the trainer on a messy
real-world-style folder."""

import csv
import json
import os
import re

import numpy as np
import pytest

from configs import cnn as cnn_config
from input_pipeline import catalogue_report
from jaxcls.trainer import run as train
from tests.messy import make_messy_folder
from tools import catalogue as catalogue_tool


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    return make_messy_folder(str(tmp_path_factory.mktemp("messy") / "animals"))


def test_catalogue_lists_every_file_with_its_status(messy, tmp_path, capsys):
    assert catalogue_report.write_report(messy["root"], str(tmp_path)) == 0
    rows = list(csv.DictReader(open(tmp_path / "catalogue.csv")))
    assert len(rows) == messy["num_files"]
    by_rel = {os.path.relpath(r["path"], messy["root"]): r for r in rows}
    for rel, status in messy["bad"].items():
        assert by_rel[rel]["status"] == status, (rel, by_rel[rel])
    assert by_rel["cane/cmyk.jpg"]["mode"] == "CMYK" and by_rel["cane/cmyk.jpg"]["channels"] == "4"
    assert by_rel["cane/rgba.png"]["channels"] == "4"
    assert by_rel["gatto/palette.png"]["mode"] == "P"
    assert by_rel["ragno/rotated.jpg"]["orientation"] == "6"
    assert by_rel["ragno/gray16.png"]["status"] == "ok"
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["num_bad"] == 3 and summary["other_files"] == 1
    assert summary["class_counts"] == {"cane": 43, "gatto": 42, "ragno": 43}
    assert "JPEG x 3" in summary["format_x_channels"]
    for png in ("class_counts.png", "sizes.png"):
        assert os.path.getsize(tmp_path / png) > 1000
    out = capsys.readouterr().out
    assert "BAD truncated" in out and "gatto/truncated.jpg" in out


def test_catalogue_class_map_renames_italian_folders(messy, tmp_path):
    assert catalogue_tool.main([messy["root"], f"--out={tmp_path}", "--class_map=animals10"]) == 0
    summary = json.load(open(tmp_path / "summary.json"))
    assert set(summary["class_counts"]) == {"dog", "cat", "spider"}


def test_catalogue_missing_dir_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(catalogue_report.UsageError, match="not a directory"):
        catalogue_report.write_report(str(tmp_path / "nope"), str(tmp_path))
    assert catalogue_tool.main([str(tmp_path / "nope"), f"--out={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and err.startswith("catalogue: error: ")


def folder_config(root, **data):
    c = cnn_config.get_config()
    c.unlock()
    c.dataset = f"folder:{root}"
    c.model.name = "cnn_small"
    c.data.image_size = 16
    c.data.class_map = "animals10"
    c.num_epochs = 4
    c.batch_size = 16
    c.checkpoint.async_save = False
    for k, v in data.items():
        c.data[k] = v
    c.lock()
    return c


def test_training_on_a_messy_folder_skips_and_lists_bad_files(messy, tmp_path):
    results = train.run(folder_config(messy["root"], max_bad_fraction=0.05), str(tmp_path))
    skipped = {os.path.relpath(s["path"], messy["root"]) for s in results["skipped_files"]}
    assert skipped == set(messy["bad"])
    assert results["class_names"] == ["cat", "dog", "spider"]
    assert results["splits"]["test"]["accuracy"] >= 0.9  # colours are easy to tell apart
    n = sum(
        len(list(csv.reader(open(tmp_path / "splits" / f"{s}.csv")))) - 1
        for s in ("train", "val", "test")
    )
    assert n == messy["num_files"] - len(messy["bad"])


def test_too_many_bad_files_abort_with_a_clear_message(messy, tmp_path):
    with pytest.raises(ValueError, match="(?i)bad|could not|decode"):
        train.run(folder_config(messy["root"]), str(tmp_path))  # default limit 1% < 3/133


def test_preprocess_writes_a_trainable_copy_with_its_catalogue(messy, tmp_path, capsys):
    from PIL import Image

    from input_pipeline import preprocess

    out = tmp_path / "copy"
    assert preprocess.preprocess(messy["root"], str(out), size=24, class_map="animals10") == 0
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg"))
    assert len(files) == messy["num_files"] - len(messy["bad"])
    assert {f.split("/")[0] for f in files} == {"cat", "dog", "spider"}
    for f in files[:5] + [
        "spider/rotated.jpg",
        "dog/cmyk.jpg",
        "dog/rgba.jpg",
        "spider/gray16.jpg",
    ]:
        with Image.open(out / f) as im:
            assert im.size == (24, 24) and im.mode == "RGB", f
    # The EXIF-rotated 20x60 image becomes portrait: padded left/right, not top/bottom.
    rotated = np.asarray(Image.open(out / "spider/rotated.jpg"))
    assert rotated[:, :3].mean() < 30 and rotated[10:14, 10:14].mean() > 40
    skipped = list(csv.DictReader(open(out / "skipped.csv")))
    assert len(skipped) == 3
    summary = json.load(open(out / ".catalogue" / "summary.json"))
    assert summary["num_bad"] == 0 and summary["num_files"] == len(files)
    assert summary["common_sizes"][0] == ["24x24", len(files)]


def test_preprocess_tool_refuses_to_write_into_its_source(messy, capsys):
    from tools import preprocess as preprocess_tool

    assert preprocess_tool.main([messy["root"], f"--out={messy['root']}"]) == 2
    err = capsys.readouterr().err
    assert err == "preprocess: error: --out must differ from the source directory\n"


def test_bench_pipeline_prints_and_writes_its_table(tmp_path, capsys):
    from jaxcls.benchmark import pipeline

    data = tmp_path / "photos"
    out = tmp_path / "bench.md"
    rc = pipeline.run(
        str(data),
        synthetic=40,
        photo_size=(120, 90),
        rounds=2,
        workers=[0],
        batches=2,
        warmup=1,
        batch_size=8,
        size=32,
        out=str(out),
        no_torch=True,
    )
    assert rc == 0
    from PIL import Image

    sizes = {Image.open(p).size for p in data.rglob("*.jpg")}
    assert sizes == {(120, 90), (90, 120)}  # landscape, and every third one portrait
    table = out.read_text()
    assert "| workers |" in table and "| 0 |" in table and "medians of 2 rounds" in table
    rate = float(table.strip().splitlines()[-1].split("|")[2])
    assert rate > 0
    if os.path.exists("/proc/stat"):  # Linux: what the host took while jaxcls ran; no torch
        row = r"\| 0 \| [0-9.]+ \| n/a \(skipped \(--no_torch\)\) \| - \| \d+% / - \|"
        assert re.search(row, table)
    printed = capsys.readouterr().out
    assert printed.count("workers=0: jaxcls") == 2  # one line per round
    # Every file read once before the first timed configuration (the 40 photos).
    assert printed.splitlines()[0].startswith("read 40 files (")
    assert printed.index("read 40 files") < printed.index("workers=0")


def test_the_page_cache_warm_up_reads_every_file_or_none_over_its_limit(
    tmp_path, monkeypatch, capsys
):
    from jaxcls.benchmark import pipeline

    (tmp_path / "a" / "b").mkdir(parents=True)
    sizes = {"a/x.jpg": 3 << 20, "a/b/y.png": 5, "z.bin": 0}  # one file bigger than the chunk
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"\1" * size)
    warm = pipeline.warm_file_cache([str(tmp_path)])
    assert (warm["files"], warm["bytes"], warm["read"]) == (3, sum(sizes.values()), True)
    single = pipeline.warm_file_cache([str(tmp_path / "a" / "x.jpg")])
    assert (single["files"], single["bytes"]) == (1, 3 << 20)
    # Paths may come as any iterable, read once: a folder and a file from a generator.
    both = pipeline.warm_file_cache(p for p in (str(tmp_path / "a"), str(tmp_path / "z.bin")))
    assert (both["files"], both["bytes"]) == (3, sum(sizes.values()))
    slow = pipeline.warm_file_cache([str(tmp_path)], every_s=0.0)  # a line after every file
    assert slow["read"] and capsys.readouterr().out.count(" MB/s, ETA ") == 3
    over = pipeline.warm_file_cache([str(tmp_path)], limit_bytes=1 << 20)
    assert (over["files"], over["read"], over["seconds"]) == (3, False, 0.0)
    # A broken link is no file; one that cannot be opened is counted, not a crash.
    os.symlink(tmp_path / "gone.jpg", tmp_path / "a" / "link.jpg")
    real_open = open

    def refuse_png(name, *args, **kwargs):
        if str(name).endswith(".png"):
            raise PermissionError(13, "Permission denied", name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse_png)
    warm = pipeline.warm_file_cache([str(tmp_path)])
    assert (warm["files"], warm["unreadable"], warm["read"]) == (3, 1, True)


def test_bench_pipeline_tool_missing_dir_is_a_clear_error(tmp_path, capsys):
    from tools import bench_pipeline

    assert bench_pipeline.main([str(tmp_path / "nope"), "--no_torch"]) == 2
    assert (
        capsys.readouterr().err
        == f"bench_pipeline: error: {tmp_path / 'nope'} is not a directory\n"
    )
