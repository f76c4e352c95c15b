"""Files written whole or not at all (bertfit/files.py)."""
import pytest

from bertfit.files import write_atomic


def test_an_atomic_write_onto_a_folder_fails_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "out", "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_atomic_write_replaces_a_file_whole(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("old")
    write_atomic(path, "new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
