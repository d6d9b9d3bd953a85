"""Data roots: every escape is refused with the setting and the roots named; files are new only."""

import os
from pathlib import Path

import pytest

from tango_servers.common.data_roots import (
    DataRoots,
    FileExists,
    OutsideDataRoots,
    first_free_name,
    stack_data_directory,
    write_new_file,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


def test_default_root_is_the_stack_data_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("TANGO_SUITE_STATE_DIR", str(tmp_path))
    assert DataRoots.from_setting([]).roots == ((tmp_path / "data").resolve(),)
    assert stack_data_directory() == tmp_path / "data"
    monkeypatch.delenv("TANGO_SUITE_STATE_DIR")
    assert stack_data_directory().name == "tango-suite-data"


def test_relative_root_is_refused():
    with pytest.raises(OutsideDataRoots, match="data_roots: data must be absolute"):
        DataRoots.from_setting(["data"])


@pytest.mark.parametrize(
    "escape",
    ["../outside/x.png", "sub/../../outside/x.png", "/etc/x.png", "link/x.png", "dangling.png"],
)
def test_escapes_are_refused_naming_the_argument_and_roots(root, escape):
    os.symlink(root.parent / "outside", root / "link")
    os.symlink(root.parent / "outside" / "new.png", root / "dangling.png")
    roots = DataRoots.from_setting([str(root)])
    with pytest.raises(OutsideDataRoots) as refusal:
        roots.check(root / escape if not escape.startswith("/") else Path(escape), "Snapshot path")
    assert str(refusal.value).startswith("Snapshot path ")
    assert f"the data roots {root.resolve()} (device property data_roots)" in str(refusal.value)


def test_inside_paths_resolve_and_directories_are_made_only_inside(root):
    roots = DataRoots.from_setting([str(root)])
    assert roots.check(root / "a" / "b.png", "Snapshot path") == root.resolve() / "a" / "b.png"
    assert roots.make_directory(root / "a" / "b", "Snapshot path").is_dir()
    with pytest.raises(OutsideDataRoots):
        roots.make_directory(root.parent / "outside" / "made", "Snapshot path")
    assert not (root.parent / "outside" / "made").exists()


def test_existing_files_are_never_overwritten(root):
    target = root / "x.png"
    write_new_file(target, lambda f: f.write(b"first"))
    with pytest.raises(FileExists, match="never overwrites"):
        write_new_file(target, lambda f: f.write(b"second"))
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in root.iterdir()) == ["x.png"]  # no partial file left behind
    os.symlink(root.parent / "outside" / "victim", root / "dangling.png")
    with pytest.raises(FileExists):
        write_new_file(root / "dangling.png", lambda f: f.write(b"x"))
    assert not (root.parent / "outside" / "victim").exists()
    assert first_free_name(root, "x", ".png") == root / "x_1.png"


@pytest.mark.parametrize("setting", ["", "relative/dir"])
def test_a_setting_given_as_text_is_named_as_written(root, setting):
    """The Pilatus's saving_directory arrives as text: the refusal quotes it as written (the one
    message form of every server: the setting, the path, the roots)."""
    roots = DataRoots.from_setting([str(root)])
    with pytest.raises(OutsideDataRoots) as refusal:
        roots.check(setting, "saving_directory")
    assert str(refusal.value) == (
        f"saving_directory {setting!r} must be an absolute path inside the data roots {root.resolve()} "
        "(device property data_roots)"
    )
    assert roots.check(str(root / "sub"), "saving_directory") == root.resolve() / "sub"
