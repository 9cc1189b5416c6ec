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
