"""The annotation app's one door to the run's label store: read every label, save one answer.

Durability: each answer is written as its own one-row parquet shard in `RUN/labels/` through
`store.ShardWriter` (temporary file, fsync, rename) before the browser is told "saved". Every
reader of a run (golden, agreement, report, export, the Hub) already reads every label shard,
so a saved answer is seen by them at once, a killed server loses nothing it acknowledged, and
two servers labeling one run never write the same file. An append-only journal would have been
a second on-disk format that every one of those readers had to learn; one small shard per
answer is the existing format. The cost, many small files, is paid back by `compact()`: on a
clean stop the server merges the shards it wrote into one (written whole and renamed before the
small ones are removed, so a reader in between sees each row at most twice, identical, which
every reader's "latest label per labeler and unit" treats as one).

This module is the only place the app touches the label store, so that the run folder's
future writer (a `RunFolder` with a writer lock) changes this file alone.
"""

from __future__ import annotations

from pathlib import Path

from simulate.schema import Label
from simulate.store import LABELS, RunFolder, arrow_schema


class LabelStore:
    """Every label of one run folder, re-read incrementally, and answers saved one by one."""

    def __init__(self, run_dir: str | Path) -> None:
        self.folder = RunFolder.open(run_dir)  # a RunFolderError for what is not a run folder
        self.run_dir = self.folder.path
        self._shards: dict[Path, list[Label]] = {}
        self.written: list[Path] = []
        """Shards this store wrote since it was opened (or last compacted)."""
        arrow_schema(LABELS)  # builds on `datasets` (a second to import): now, not on answer 1

    def labels(self) -> list[Label]:
        """Every label in the run, in the order the shards were written.

        Shards are immutable once renamed into place, so only shards not seen before are read;
        shards that disappeared (compacted by another server) are dropped.
        """
        paths = self.folder.shards(LABELS)
        present = set(paths)
        for gone in [p for p in self._shards if p not in present]:
            del self._shards[gone]
        for path in paths:
            if path not in self._shards:
                try:
                    self._shards[path] = self.folder.labels_in(path)
                except FileNotFoundError:  # compacted away between listing and reading
                    continue
        return [label for path in sorted(self._shards) for label in self._shards[path]]

    def save(self, label: Label) -> Label:
        """Write ``label`` as a shard of its own, durably, before returning it."""
        path = self.folder.write_shard(LABELS, [label])
        self.written.append(path)
        self._shards[path] = [label]
        return label

    def compact(self) -> Path | None:
        """Merge the shards this store wrote into one; its path (None: fewer than two)."""
        if len(self.written) < 2:
            return None
        rows = [label for path in self.written for label in self._shards.get(path, [])]
        merged = self.folder.write_shard(LABELS, rows)
        for path in self.written:
            path.unlink(missing_ok=True)
            self._shards.pop(path, None)
        self.written = []
        self._shards[merged] = rows
        return merged
