"""The run folder's store: atomic writes, the typed manifest, shards and their readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulate.store import write_atomic


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    path = tmp_path / "out" / "episodes.jsonl"

    def half(tmp: Path) -> None:
        tmp.write_text('{"episode_id": "a"}\n')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half)
    assert list((tmp_path / "out").iterdir()) == []
