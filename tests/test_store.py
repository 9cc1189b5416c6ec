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


def _model_fields(model) -> set[str]:
    return set(model.model_fields)


def test_arrow_features_and_pydantic_fields_agree():
    """Every column of a shard is a field of its model and back, nested ones included."""
    from simulate.schema import Episode, Label, Message, Outcome, Usage
    from simulate.store import episode_features, label_features

    episode = episode_features()
    assert set(episode) == _model_fields(Episode)
    assert set(episode["messages"].feature) == _model_fields(Message)
    assert set(episode["outcome"]) == _model_fields(Outcome)
    assert set(episode["usage"].feature) == _model_fields(Usage)
    assert set(label_features()) == _model_fields(Label)


def test_a_stored_episode_round_trips_through_the_arrow_schema(tmp_path):
    from simulate.schema import Episode, Message, Outcome, ToolCall, Usage
    from simulate.store import RunFolder

    episode = Episode(
        episode_id="e1",
        run_id="r",
        persona_id="p",
        scenario_id="s",
        trial=0,
        seed=1,
        persona="{}",
        scenario="{}",
        messages=[
            Message(role="user", content="hi"),
            Message(
                role="assistant",
                content="ok",
                tool_calls=[ToolCall(name="t", arguments={"a": 1}, result={"r": 2})],
                context=["passage"],
                latency_ms=1.5,
            ),
        ],
        outcome=Outcome(status="gave_up", reason="slow", failed_checks=["must_mention: 'x'"]),
        success=False,
        n_turns=1,
        usage=[Usage(role="user", model="m", calls=1, prompt_tokens=3)],
        duration_s=0.1,
        user="agenda",
        target="demo",
        created_at="2026-01-01T00:00:00+00:00",
    )
    folder = RunFolder(tmp_path)
    with folder.writer() as writer:
        writer.add(episode)
    assert list(folder.episodes()) == [episode]
    assert list(folder.episodes(ids={"e1"})) == [episode]
    assert list(folder.episodes(ids=set())) == []
    assert list(folder.episodes([("status", "goal_reached")])) == []
    assert folder.count() == 1 and folder.episode_ids() == {"e1"}


def test_manifests_of_earlier_versions_and_unknown_keys_read_and_survive_a_rewrite(tmp_path):
    import json

    from simulate.store import RunFolder, write_manifest

    old = {
        "simulate": "run",
        "schema_version": 1,
        "run_id": "old",
        "status": "complete",
        "config": {"seed": 3, "target": "demo", "future_flag": True},
        "labeling": [{"at": "x", "imported": "people.csv", "annotator": "ana"}],
        "something_new": {"kept": 1},
    }
    write_manifest(tmp_path, old)
    folder = RunFolder.open(tmp_path)
    manifest = folder.manifest
    assert manifest.run_id == "old" and manifest.config.seed == 3 and manifest.status == "complete"
    assert manifest.labeling[0].annotator == "ana"  # type: ignore[attr-defined]
    folder.write_manifest(manifest)
    again = json.loads((tmp_path / "manifest.json").read_text())
    assert again["something_new"] == {"kept": 1}
    assert again["config"]["future_flag"] is True


def test_a_manifest_that_is_not_an_object_or_not_json_is_one_error(tmp_path):
    from simulate.errors import RunFolderError
    from simulate.store import RunFolder

    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(RunFolderError, match="not a Simulate manifest"):
        RunFolder.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(RunFolderError, match="unreadable manifest"):
        RunFolder.open(tmp_path)
    with pytest.raises(RunFolderError, match="no such run folder"):
        RunFolder.open(tmp_path / "nope")


def test_a_second_writer_is_refused_with_who_holds_the_lock(tmp_path):
    import subprocess
    import sys
    import time

    from simulate.errors import RunLocked
    from simulate.store import RunFolder

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from simulate.store import RunFolder\n"
            f"with RunFolder({str(tmp_path)!r}).lock('labels', 'simulate label'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        locked = rf"`simulate label` \(pid {holder.pid}, since"
        with pytest.raises(RunLocked, match=locked), RunFolder(tmp_path).lock("labels", "x"):
            pass
        with RunFolder(tmp_path).lock("episodes", "simulate run"):  # another role is free
            pass
    finally:
        holder.kill()  # SIGKILL: the OS releases the lock with the process
        holder.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            with RunFolder(tmp_path).lock("labels", "simulate label"):
                break
        except RunLocked:
            assert time.monotonic() < deadline, "the lock of a killed writer was not released"
            time.sleep(0.05)


def test_a_new_writer_waits_for_the_helpers_of_a_dead_one(tmp_path, monkeypatch):
    """A Ray worker outlives its killed driver by a moment: the next writer of its role waits
    until it is gone (and says who when it does not go), so nothing is stored after it read."""
    import subprocess
    import sys
    import threading
    import time

    from simulate import store
    from simulate.errors import RunLocked
    from simulate.store import RunFolder

    with RunFolder(tmp_path).lock("episodes", "simulate run --engine ray"):
        pass  # the driver's session, ended (killed) before its workers
    helper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from simulate.store import RunFolder\n"
            f"release = RunFolder({str(tmp_path)!r}).hold('episodes', 'w0')\n"
            "print('held', flush=True)\n"
            "sys.stdin.readline()\n",  # until the test says go
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert helper.stdout is not None and helper.stdout.readline().strip() == "held"
        monkeypatch.setattr(store, "HELPERS_WAIT_S", 0.3)
        locked = rf"still being written by `w0 \(a helper\)` \(pid {helper.pid}, since .*\) of an"
        with pytest.raises(RunLocked, match=locked), RunFolder(tmp_path).lock("episodes", "x"):
            pass
        with RunFolder(tmp_path).lock("labels", "simulate label"):  # another role is free
            pass
        monkeypatch.setattr(store, "HELPERS_WAIT_S", 30.0)
        threading.Timer(0.5, lambda: helper.stdin.close()).start()  # the helper exits
        started = time.monotonic()
        with RunFolder(tmp_path).lock("episodes", "simulate run --resume"):
            assert time.monotonic() - started >= 0.4, "the writer did not wait for the helper"
    finally:
        helper.kill()
        helper.wait()
    assert sorted(p.name for p in (tmp_path / ".locks").iterdir()) == [
        "episodes.lock",
        "labels.lock",
    ]  # the dead helper's files are cleared


def _episode(episode_id: str, success: bool = True):
    from simulate.schema import Episode, Outcome

    return Episode(
        episode_id=episode_id,
        run_id="r",
        persona_id="p",
        scenario_id=episode_id,
        trial=0,
        seed=0,
        persona="{}",
        scenario="{}",
        messages=[],
        outcome=Outcome(status="goal_reached" if success else "gave_up"),
        success=success,
        n_turns=1,
        duration_s=0.0,
        user="agenda",
        target="demo",
        created_at="2026-01-01T00:00:00+00:00",
    )


def test_readers_count_an_episode_stored_twice_once_and_keep_a_slots_latest_label(tmp_path):
    """A folder doubled by two writers of an older version reads right."""
    from simulate.schema import Label
    from simulate.store import LABELS, RunFolder, write_manifest

    write_manifest(tmp_path, {"run_id": "r"})
    folder = RunFolder(tmp_path)
    for _ in range(2):
        with folder.writer() as writer:
            writer.add(_episode("a"))
            writer.add(_episode("b", success=False))
    label = dict(
        episode_id="a", criterion="c", labeler="human:ana", labeler_kind="human", value="no"
    )
    with folder.writer(LABELS) as writer:
        writer.add(Label(**label, created_at="2026-01-01T00:00:00+00:00"))
    with folder.writer(LABELS) as writer:
        writer.add(Label(**{**label, "value": "yes"}, created_at="2026-01-02T00:00:00+00:00"))
    assert folder.table().num_rows == 2 and len(list(folder.episodes())) == 2
    assert folder.dataset().num_rows == 2
    assert folder.outcome_counts().stored == 2
    assert folder.scan_episodes().collect().height == 2
    assert [x.value for x in folder.labels()] == ["yes"]
    assert folder.scan(LABELS).collect()["value"].to_list() == ["yes"]


def test_an_unreadable_or_foreign_shard_is_left_out_with_a_warning_naming_it(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from simulate.store import RunFolder, ShardWarning, write_manifest

    write_manifest(tmp_path, {"run_id": "r"})
    folder = RunFolder(tmp_path)
    with folder.writer() as writer:
        writer.add(_episode("a"))
    good = folder.shards()[0]
    truncated = good.with_name("part-truncated.parquet")
    truncated.write_bytes(good.read_bytes()[:100])
    foreign = good.with_name("part-zforeign.parquet")
    pq.write_table(pa.table({"x": [1]}), foreign)
    with pytest.warns(ShardWarning) as caught:
        fresh = RunFolder(tmp_path)
        assert [e.episode_id for e in fresh.episodes()] == ["a"]
        assert fresh.scan_episodes().collect().height == 1
    messages = " ".join(str(w.message) for w in caught)
    assert "part-truncated.parquet" in messages and "part-zforeign.parquet" in messages
    assert {p.name for p, _ in RunFolder(tmp_path).bad_shards()} == {
        "part-truncated.parquet",
        "part-zforeign.parquet",
    }


def test_repair_moves_bad_shards_aside_and_says_what_was_lost(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from simulate.cli import cli
    from simulate.store import RunFolder, write_manifest

    write_manifest(tmp_path, {"run_id": "r"})
    folder = RunFolder(tmp_path)
    with folder.writer() as writer:
        writer.add(_episode("a"))
    good = folder.shards()[0]
    good.with_name("part-truncated.parquet").write_bytes(good.read_bytes()[:100])
    pq.write_table(pa.table({"x": [1, 2]}), good.with_name("part-zforeign.parquet"))

    result = CliRunner().invoke(cli, ["repair", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert "part-truncated.parquet" in result.output and "rows unknown" in result.output
    assert "part-zforeign.parquet" in result.output and "2 rows" in result.output
    assert [p.name for p in RunFolder(tmp_path).shards()] == [good.name]
    assert not RunFolder(tmp_path).bad_shards()
    assert (tmp_path / "quarantine" / "episodes" / "part-zforeign.parquet").is_file()
    again = CliRunner().invoke(cli, ["repair", str(tmp_path)])
    assert "nothing to repair" in again.output


def test_a_run_folder_at_a_url_is_one_error_and_no_local_folder(tmp_path, monkeypatch, capsys):
    """`--out s3://bucket/run` is refused, not written to a local folder named `s3:`."""
    from simulate.cli import main

    monkeypatch.chdir(tmp_path)
    shop = Path(__file__).parent / "data" / "shop"
    run = ["run", "--personas", str(shop / "personas.yaml"), "--scenarios"]
    run += [str(shop / "scenarios.yaml"), "--target", "demo", "--out", "s3://bucket/run", "-q"]
    for args in (run, ["report", "gs://bucket/run"]):
        with pytest.raises(SystemExit) as exit:
            main(args)
        assert exit.value.code == 1
        err = capsys.readouterr().err
        assert "run folders at URLs (s3://, gs://, ...) are not supported" in err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
