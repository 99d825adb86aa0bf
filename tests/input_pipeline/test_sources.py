"""Sources list the right examples, with clear errors for bad dataset layouts."""

import os

import numpy as np
import pytest

from input_pipeline import sources
from input_pipeline.sources import SourceError

from .conftest import solid, write_image


def test_digits_are_real_uint8_rgb_with_ten_classes():
    src = sources.make_source("digits")
    assert len(src) == 1797 and src.class_names == [str(i) for i in range(10)]
    image = src.load(0)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    assert image.min() == 0
    assert max(src.load(i).max() for i in range(20)) == 255  # 16 * 255 / 16.
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    assert np.bincount(src.labels).min() > 170


def test_folder_source_lists_classes_sorted_and_files_recursively(make_folder, tmp_path):
    root = make_folder({"zebra": 2, "ant": 3})
    write_image(os.path.join(root, "ant", "nested", "deep.PNG"), solid((1, 2, 3)))
    (tmp_path / "data" / "ant" / "notes.txt").write_text("not an image, ignored")
    (tmp_path / "data" / "ant" / ".hidden.jpg").write_bytes(b"")
    src = sources.make_source(f"folder:{root}")
    assert src.class_names == ["ant", "zebra"]
    assert len(src) == 6
    assert "ant/nested/deep.PNG" in src.keys
    assert all(not k.endswith((".txt", ".hidden.jpg")) for k in src.keys)
    assert src.labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert isinstance(src.load(src.keys[0]), bytes)
    assert src.describe(src.keys[0]) == os.path.join(root, src.keys[0])


def test_folder_source_animals10_class_map(make_folder):
    root = make_folder({"cane": 1, "gatto": 1, "ragno": 1})
    src = sources.FolderSource(root, class_map="animals10")
    assert src.class_names == ["cat", "dog", "spider"]
    assert dict(zip(src.keys, src.labels.tolist())) == {
        "cane/img_000.jpg": 1,
        "gatto/img_000.jpg": 0,
        "ragno/img_000.jpg": 2,
    }
    custom = sources.FolderSource(root, class_map={"cane": "hund"})
    assert custom.class_names == ["gatto", "hund", "ragno"]
    with pytest.raises(SourceError, match="same class name"):
        sources.FolderSource(root, class_map={"cane": "x", "gatto": "x"})
    with pytest.raises(SourceError, match="unknown class_map"):
        sources.FolderSource(root, class_map="animals11")


def test_folder_source_errors_name_the_problem(tmp_path, make_folder):
    with pytest.raises(SourceError, match="does not exist: .*nowhere"):
        sources.make_source(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no class folders"):
        sources.make_source(f"folder:{tmp_path / 'empty'}")
    root = make_folder({"cat": 2, "dog": 1})
    os.makedirs(os.path.join(root, "bird"))
    with open(os.path.join(root, "bird", "readme.txt"), "w") as f:
        f.write("x")
    with pytest.raises(SourceError, match=r"without image files.*\['bird'\]"):
        sources.make_source(f"folder:{root}")
    with pytest.raises(SourceError, match="unknown dataset spec"):
        sources.make_source("imagenet")


def test_repr_hash_changes_when_the_file_list_changes(make_folder):
    root = make_folder({"a": 2, "b": 2})
    first = repr(sources.FolderSource(root))
    assert first == repr(sources.FolderSource(root))
    assert "sha=" in first
    write_image(os.path.join(root, "b", "new.png"), solid((0, 0, 0)))
    assert repr(sources.FolderSource(root)) != first


def test_csv_source_with_names_ints_and_relative_paths(make_folder, tmp_path):
    root = make_folder({"cat": 2, "dog": 2})
    manifest = tmp_path / "data" / "list.csv"
    manifest.write_text(
        "path,label\ncat/img_000.jpg,cat\ndog/img_001.png,dog\n"
        f"{os.path.join(root, 'cat', 'img_001.png')},cat\n"
    )
    src = sources.make_source(f"csv:{manifest}")
    assert src.class_names == ["cat", "dog"] and src.labels.tolist() == [0, 1, 0]
    assert isinstance(src.load(src.keys[2]), bytes)
    ints = tmp_path / "data" / "ints.csv"
    ints.write_text("path,label,class_name\ncat/img_000.jpg,1,cat\ndog/img_000.jpg,0,dog\n")
    src = sources.CsvSource(str(ints))
    assert src.class_names == ["dog", "cat"] and src.labels.tolist() == [1, 0]


def test_csv_source_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        sources.CsvSource(str(tmp_path / "none.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\na.jpg,1\n")
    with pytest.raises(SourceError, match=r"lacks column\(s\) \['label', 'path'\]"):
        sources.CsvSource(str(bad))
    clash = tmp_path / "clash.csv"
    clash.write_text("path,label,class_name\na.jpg,0,cat\nb.jpg,0,dog\n")
    with pytest.raises(SourceError, match="two class names"):
        sources.CsvSource(str(clash))
