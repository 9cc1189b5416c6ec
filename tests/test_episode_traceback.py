"""An agent's crash keeps its traceback with the episode; `show --episode` prints it; shards
written before the column existed still read."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

import simulate
from simulate.cli import cli
from simulate.store import RunFolder

SHOP = Path(__file__).parent / "data" / "shop"
CRASHING = """
def lookup(order):
    raise KeyError(f"no order {order!r} in the cache")


def respond(messages):
    return lookup("A-10")
"""


def crashed_run(tmp_path: Path) -> Path:
    agent = tmp_path / "crashing.py"
    agent.write_text(CRASHING)
    out = tmp_path / "run"
    args = [
        "run", "--personas", str(SHOP / "personas.yaml"), "--scenarios",
        str(SHOP / "scenarios.yaml"), "--target", f"python:{agent}:respond", "--out", str(out),
        "--no-preflight", "--stop-after-errors", "0", "-q",
    ]  # fmt: skip
    CliRunner().invoke(cli, args)
    return out


def test_show_prints_the_traceback_of_a_crashed_episode(tmp_path: Path) -> None:
    out = crashed_run(tmp_path)
    episode = next(RunFolder(out).episodes())
    assert episode.outcome.reason == "KeyError: \"no order 'A-10' in the cache\""
    assert 'crashing.py", line 7, in respond' in episode.error_traceback
    assert 'crashing.py", line 3, in lookup' in episode.error_traceback
    shown = CliRunner().invoke(cli, ["show", str(out), "--episode", episode.episode_id])
    assert shown.exit_code == 0, shown.output
    assert "Traceback (most recent call last)" in shown.output
    assert "line 3, in lookup" in shown.output
    listing = CliRunner().invoke(cli, ["show", str(out), "--limit", "1"])
    assert "Traceback" not in listing.output  # a listing points to it instead
    assert f"traceback: simulate show RUN --episode {episode.episode_id}" in listing.output


def test_shards_from_before_the_traceback_column_still_read(tmp_path: Path) -> None:
    out = crashed_run(tmp_path)
    for shard in (out / "episodes").glob("*.parquet"):
        table = pq.read_table(shard)
        pq.write_table(table.drop_columns(["error_traceback"]), shard)
    folder = RunFolder(out)
    assert {e.error_traceback for e in folder.episodes()} == {None}
    assert folder.scan_episodes().collect().height == 6
    assert simulate.load_run(out).num_rows == 6
    assert CliRunner().invoke(cli, ["report", str(out), "--no-html"]).exit_code == 0
