"""obd.files.publishing: a file appears whole under its name, or not at all."""

from pathlib import Path

import pytest

from obd.files import publishing


def test_published_whole_and_the_partial_file_is_gone(tmp_path: Path) -> None:
    target = tmp_path / "out.ndjson"
    with publishing(target) as partial:
        partial.write_bytes(b"{}\n")
        assert not target.exists()
    assert target.read_bytes() == b"{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ndjson"]


def test_never_replaces_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("first")
    with pytest.raises(FileExistsError), publishing(target) as partial:
        partial.write_text("second")
    assert target.read_text() == "first"
    with publishing(target, partial=tmp_path / ".out.csv.partial", replace=True) as partial:
        partial.write_text("second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_failed_write_publishes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"

    def broken() -> None:
        with publishing(target) as partial:
            partial.write_bytes(b"half")
            raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError):
        broken()
    assert list(tmp_path.iterdir()) == []
