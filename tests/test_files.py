"""``xrdpipe.files.write_atomic``: whole files, no leftovers, concurrent writers both succeed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from xrdpipe.files import write_atomic


def test_two_writers_of_one_target_both_finish_and_one_whole_file_remains(tmp_path: Path):
    target = tmp_path / "record.json"
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(text: str) -> None:
        def write(tmp: Path) -> None:
            tmp.write_text(text)
            barrier.wait(timeout=10)  # both temporary files exist before either rename

        try:
            write_atomic(target, write)
        except BaseException as exc:  # noqa: BLE001 (collected for the assertion)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("a" * 100, "b" * 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_text() in ("a" * 100, "b" * 100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path):
    target = tmp_path / "table.txt"
    target.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.txt"]
