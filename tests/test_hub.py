"""`simulate export RUN --to-hub`: the real huggingface_hub push against a local fake Hub."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import datasets
import httpx
import huggingface_hub
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

import simulate
from simulate.errors import ConfigError, RunFolderError
from simulate.hub import HubError, check_repo_id, prepare_upload, push_to_hub
from simulate.store import episode_features, write_manifest
from tests.fakes.hub_server import FakeHubServer

TOKEN = "hf_TestTokenThatMustNeverLeak42"


def labeled_demo_run(out: Path) -> Path:
    """The bundled demo (12 personas x 9 scenarios against the offline airline agent), labeled
    by the rules, with its golden set: what `simulate demo` makes, built in this process."""
    from simulate.label.golden import build_golden
    from simulate.label.labeling import LabelConfig, label_run

    demo = Path(simulate.__file__).parent / "demo"
    config = simulate.RunConfig(
        personas=[str(demo / "personas")],
        scenarios=[str(demo / "scenarios")],
        target="demo",
        out=str(out),
        use_cache=False,
    )
    asyncio.run(simulate.run(config))
    asyncio.run(label_run(LabelConfig(run_dir=str(out))))
    build_golden(out)
    return out


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo run: 108 episodes, rule labels and a golden set."""
    return labeled_demo_run(tmp_path_factory.mktemp("demo") / "run")


@pytest.fixture
def run(demo_run: Path, tmp_path: Path) -> Path:
    """A copy of the demo run this test may change."""
    return Path(shutil.copytree(demo_run, tmp_path / "run"))


@pytest.fixture
def hub() -> Iterator[FakeHubServer]:
    with FakeHubServer() as server:
        yield server


@pytest.fixture
def hub_in_process(hub: FakeHubServer, monkeypatch: pytest.MonkeyPatch) -> FakeHubServer:
    """The fake Hub for library calls in this process: HF_ENDPOINT and HF_TOKEN point at it."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return hub


def hub_env(hub: FakeHubServer, home: Path, token: str | None = TOKEN) -> dict[str, str]:
    """The subprocess environment: the fake Hub, a token, and no real login to read."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env |= {"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "NO_PROXY": "127.0.0.1"}
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def export(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulate", "export", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def repo_authorizations(hub: FakeHubServer) -> set[str]:
    """The Authorization headers of the push's requests (huggingface_hub also fetches a public
    registry, `/api/agent-harnesses`, without one)."""
    pushed = [a for (_, path), a in zip(hub.requests, hub.authorizations, strict=True)]
    paths = [path for _, path in hub.requests]
    assert any(p.startswith("/api/datasets/") for p in paths)
    return {a for a, p in zip(pushed, paths, strict=True) if p != "/api/agent-harnesses"}


def save_repo(hub: FakeHubServer, repo_id: str, folder: Path) -> Path:
    """Write the repository's committed files to ``folder``, as a clone would."""
    for path, data in hub.repos[repo_id].files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder


def test_push_commits_every_config_privately_and_never_leaks_the_token(
    run: Path, hub: FakeHubServer, tmp_path: Path
) -> None:
    done = export(str(run), "--to-hub", "acme/support-sim", env=hub_env(hub, tmp_path / "hf"))

    assert done.returncode == 0, done.stderr
    repo = hub.repos["acme/support-sim"]
    assert repo.private is True
    assert len(repo.commits) == 1
    episodes = {f"data/episodes/{p.name}" for p in (run / "episodes").glob("*.parquet")}
    labels = {f"data/labels/{p.name}" for p in (run / "labels").glob("*.parquet")}
    golden = {f"data/golden/{p.name}" for p in (run / "golden" / "data").glob("*.parquet")}
    assert set(repo.files) == {"README.md"} | episodes | labels | golden
    assert len(golden) == 3 and labels
    assert ("POST", "/api/datasets/acme/support-sim/commit/main") in hub.requests
    assert repo_authorizations(hub) == {f"Bearer {TOKEN}"}
    for text in (done.stdout, done.stderr):
        assert TOKEN not in text
    for path, data in repo.files.items():
        assert TOKEN.encode() not in data, path
    assert f"{hub.url}/datasets/acme/support-sim" in done.stdout
    assert f"commit/{repo.sha}" in done.stdout
    assert "private" in done.stdout


def test_pushed_repository_loads_with_datasets(
    run: Path, hub: FakeHubServer, tmp_path: Path
) -> None:
    assert (
        export(str(run), "--to-hub", "acme/sim", env=hub_env(hub, tmp_path / "hf")).returncode == 0
    )
    folder = save_repo(hub, "acme/sim", tmp_path / "clone")

    episodes = datasets.load_dataset(str(folder), "episodes", split="train")
    labels = datasets.load_dataset(str(folder), "labels", split="train")
    golden = datasets.load_dataset(str(folder), "golden")

    assert episodes.num_rows == 108
    assert episodes.features == episode_features()
    assert labels.num_rows == sum(
        pq.read_metadata(p).num_rows for p in (run / "labels").glob("*.parquet")
    )
    assert dict(golden.num_rows) == {
        p.name.split("-")[0]: pq.read_metadata(p).num_rows
        for p in (run / "golden" / "data").glob("*.parquet")
    }
    assert sorted(golden) == ["test", "train", "validation"]


def test_public_flag_creates_a_public_repository(run: Path, hub_in_process: FakeHubServer) -> None:
    pushed = push_to_hub(run, "acme/open", public=True)

    assert hub_in_process.repos["acme/open"].private is False
    assert pushed.private is False and pushed.warnings == []
    assert pushed.commit_url == f"{hub_in_process.url}/datasets/acme/open/commit/" + (
        hub_in_process.repos["acme/open"].sha
    )
    with pytest.raises(HubError, match=r"acme/open is a public repository.*pass --public"):
        push_to_hub(run, "acme/open")  # without --public, a public repository is refused
    assert len(hub_in_process.repos["acme/open"].commits) == 1
    again = push_to_hub(run, "acme/open", public=True)
    assert again.private is False and again.warnings == []


def test_second_push_replaces_rows_in_a_new_commit(
    run: Path, hub_in_process: FakeHubServer, tmp_path: Path
) -> None:
    hub = hub_in_process
    push_to_hub(run, "acme/sim")
    # the run's shards are rewritten under a new name (as a resumed run adds shards)
    shards = sorted((run / "episodes").glob("*.parquet"))
    table = pa.concat_tables(pq.read_table(p) for p in shards)
    for shard in shards:
        shard.unlink()
    pq.write_table(table, run / "episodes" / "part-compacted-00000.parquet")

    pushed = push_to_hub(run, "acme/sim")

    repo = hub.repos["acme/sim"]
    assert len(repo.commits) == 2
    assert pushed.deleted == [f"data/episodes/{p.name}" for p in shards]
    assert repo.commits[1]["deleted"] == [f"data/episodes/{p.name}" for p in shards]
    episode_files = [p for p in repo.files if p.startswith("data/episodes/")]
    assert episode_files == ["data/episodes/part-compacted-00000.parquet"]
    folder = save_repo(hub, "acme/sim", tmp_path / "clone")
    assert datasets.load_dataset(str(folder), "episodes", split="train").num_rows == 108


def test_golden_folder_pushes_its_splits_as_the_golden_config(
    run: Path, hub_in_process: FakeHubServer, tmp_path: Path
) -> None:
    hub = hub_in_process
    pushed = push_to_hub(run / "golden", "acme/golden", public=True, license="mit")

    assert pushed.license == "mit" and pushed.rows["golden"]["train"] > 0
    repo = hub.repos["acme/golden"]
    assert DatasetCard(repo.files["README.md"].decode()).data.license == "mit"
    assert sorted(repo.files) == [
        "README.md",
        "data/golden/test-00000-of-00001.parquet",
        "data/golden/train-00000-of-00001.parquet",
        "data/golden/validation-00000-of-00001.parquet",
    ]
    folder = save_repo(hub, "acme/golden", tmp_path / "clone")
    by_name = datasets.load_dataset(str(folder), "golden")
    by_default = datasets.load_dataset(str(folder))
    assert dict(by_name.num_rows) == dict(by_default.num_rows)
    assert sum(by_name.num_rows.values()) == 108


def test_token_from_the_login_file_is_used(run: Path, hub: FakeHubServer, tmp_path: Path) -> None:
    home = tmp_path / "hf"
    home.mkdir()
    (home / "token").write_text("hf_FromLoginFile99\n")

    done = export(str(run), "--to-hub", "acme/sim", env=hub_env(hub, home, token=None))

    assert done.returncode == 0, done.stderr
    assert repo_authorizations(hub) == {"Bearer hf_FromLoginFile99"}


@pytest.mark.parametrize("drop", [True, False], ids=["connection-dropped", "server-error"])
def test_failed_commit_changes_nothing_and_a_retry_succeeds(
    run: Path, hub: FakeHubServer, tmp_path: Path, drop: bool
) -> None:
    env = hub_env(hub, tmp_path / "hf")
    hub.fail("commit", status=None if drop else 500)

    failed = export(str(run), "--to-hub", "acme/sim", env=env)

    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: push to 'acme/sim' failed")
    assert "nothing was committed" in lines[0]
    assert ("network failure" in lines[0]) is drop
    assert TOKEN not in failed.stderr + failed.stdout
    assert hub.repos["acme/sim"].files == {} and hub.repos["acme/sim"].commits == []

    retried = export(str(run), "--to-hub", "acme/sim", env=env)

    assert retried.returncode == 0, retried.stderr
    assert len(hub.repos["acme/sim"].commits) == 1
    assert "README.md" in hub.repos["acme/sim"].files


def test_rejected_token_is_a_one_line_error(run: Path, hub_in_process: FakeHubServer) -> None:
    hub_in_process.fail("create", status=401)

    with pytest.raises(HubError) as raised:
        push_to_hub(run, "acme/sim")

    message = str(raised.value)
    assert "\n" not in message and TOKEN not in message
    assert "refused the token (401); check HF_TOKEN or `hf auth login`" in message


def test_a_token_echoed_by_the_server_is_masked(run: Path, hub_in_process: FakeHubServer) -> None:
    hub_in_process.fail("commit", status=502, echo_auth=True)

    with pytest.raises(HubError) as raised:
        push_to_hub(run, "acme/sim")

    message = str(raised.value)
    assert TOKEN not in message
    assert "the Hub answered 502: refused 'Bearer ***'" in message


def test_missing_token_says_how_to_log_in(run: Path, hub: FakeHubServer, tmp_path: Path) -> None:
    done = export(str(run), "--to-hub", "acme/sim", env=hub_env(hub, tmp_path / "hf", token=None))

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: no Hugging Face token: set HF_TOKEN or run `hf auth login` "
        "(a token with write access)"
    ]
    assert hub.requests == []


@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "/name", "acme/", "acme/bad--name"])
def test_bad_repository_names_are_refused_before_any_request(repo_id: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a Hub dataset name .*owner/name"):
        check_repo_id(repo_id)


def test_bad_repository_name_end_to_end(run: Path, hub: FakeHubServer, tmp_path: Path) -> None:
    done = export(str(run), "--to-hub", "a/b/c", env=hub_env(hub, tmp_path / "hf"))

    assert done.returncode == 1
    assert done.stderr.startswith("error: --to-hub 'a/b/c' is not a Hub dataset name")
    assert hub.requests == []


def test_not_a_run_folder_and_empty_run_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    with pytest.raises(RunFolderError, match="is not a run folder"):
        prepare_upload(tmp_path / "notes")
    with pytest.raises(RunFolderError, match="no such run folder"):
        prepare_upload(tmp_path / "missing")
    empty = tmp_path / "empty"
    (empty / "episodes").mkdir(parents=True)
    write_manifest(empty, {"run_id": "empty", "config": {}})
    with pytest.raises(RunFolderError, match="has no episodes to push"):
        prepare_upload(empty)


def test_empty_run_sends_nothing(hub_in_process: FakeHubServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "episodes").mkdir(parents=True)
    write_manifest(empty, {"run_id": "empty", "config": {}})

    with pytest.raises(RunFolderError, match="has no episodes to push"):
        push_to_hub(empty, "acme/sim")
    with pytest.raises(ConfigError, match="is not a Hub dataset name"):
        push_to_hub(empty, "noslash")
    assert hub_in_process.requests == []


def test_to_hub_and_format_do_not_mix(run: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from simulate.cli import cli

    both = CliRunner().invoke(
        cli, ["export", str(run), "--to-hub", "acme/sim", "--format", "jsonl"]
    )
    neither = CliRunner().invoke(cli, ["export", str(run)])

    assert both.exit_code == 2 and "--to-hub pushes the whole run" in both.output
    assert neither.exit_code == 2 and "give --to-hub OWNER/NAME, or --format and --out" in (
        neither.output
    )


# --- the Git LFS upload path: how the real Hub takes parquet files ---------------------------


@pytest.fixture
def lfs_hub() -> Iterator[FakeHubServer]:
    """A fake Hub that takes parquet files by Git LFS (basic transfer), as the real Hub does."""
    with FakeHubServer(lfs_suffixes=(".parquet",)) as server:
        yield server


def lfs_env(hub: FakeHubServer, home: Path) -> dict[str, str]:
    """`hub_env` with Xet off: huggingface_hub uploads LFS files by Xet whenever hf_xet is
    installed, whatever the server says, and the fake Hub has no Xet storage."""
    return hub_env(hub, home) | {"HF_HUB_DISABLE_XET": "1"}


def parquet_files(run: Path) -> dict[str, Path]:
    """Path in the repository -> local file, for every parquet file a push of ``run`` sends."""
    return {
        f"data/{config}/{p.name}": p
        for config, folder in [
            ("episodes", "episodes"),
            ("labels", "labels"),
            ("golden", "golden/data"),
        ]
        for p in sorted((run / folder).glob("*.parquet"))
    }


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lfs_puts(hub: FakeHubServer) -> list[str]:
    """The object ids of the LFS PUTs the fake Hub saw, in order, failed ones included."""
    return [path.rsplit("/", 1)[1] for method, path in hub.requests if method == "PUT"]


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The `error:` lines of stderr, which also holds huggingface_hub's progress bars and retry
    warnings (a bar may close after the error line)."""
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


def test_lfs_push_puts_each_parquet_file_and_the_repository_loads(
    run: Path, lfs_hub: FakeHubServer, tmp_path: Path
) -> None:
    hub = lfs_hub
    done = export(str(run), "--to-hub", "acme/sim", env=lfs_env(hub, tmp_path / "hf"))

    assert done.returncode == 0, done.stderr
    repo = hub.repos["acme/sim"]
    local = parquet_files(run)
    assert len(repo.commits) == 1
    assert set(repo.files) == {"README.md", *local}
    assert repo.lfs == set(local)  # committed as LFS pointers, none inline
    assert sorted(lfs_puts(hub)) == sorted(sha256_of(p) for p in local.values())
    for path, file in local.items():
        assert repo.files[path] == file.read_bytes(), path
    puts = [
        a
        for (method, _), a in zip(hub.requests, hub.authorizations, strict=True)
        if method == "PUT"
    ]
    assert set(puts) == {""}  # the storage URL the batch handed out never gets the token
    calls = {
        a
        for (method, _), a in zip(hub.requests, hub.authorizations, strict=True)
        if method != "PUT"
    }
    assert calls - {""} == {f"Bearer {TOKEN}"}
    assert TOKEN not in done.stdout + done.stderr

    folder = save_repo(hub, "acme/sim", tmp_path / "clone")
    episodes = datasets.load_dataset(str(folder), "episodes", split="train")
    labels = datasets.load_dataset(str(folder), "labels", split="train")
    expected = pa.concat_tables(
        pq.read_table(p) for p in sorted((run / "episodes").glob("*.parquet"))
    )
    assert episodes.num_rows == expected.num_rows == 108
    assert episodes.features == episode_features()
    loaded = episodes.data.table.sort_by("episode_id")
    assert loaded.to_pylist() == expected.sort_by("episode_id").to_pylist()
    assert labels.num_rows == sum(
        pq.read_metadata(p).num_rows for p in (run / "labels").glob("*.parquet")
    )


@pytest.mark.parametrize("drop", [True, False], ids=["connection-dropped", "server-error"])
def test_failed_lfs_upload_is_one_line_commits_nothing_and_a_retry_sends_the_rest(
    run: Path, lfs_hub: FakeHubServer, tmp_path: Path, drop: bool
) -> None:
    hub, env = lfs_hub, lfs_env(lfs_hub, tmp_path / "hf")
    shard = sorted((run / "episodes").glob("*.parquet"))[0]
    oid = sha256_of(shard)
    hub.fail("lfs_upload", status=None if drop else 500, times=50, path_contains=oid)

    failed = export(str(run), "--to-hub", "acme/sim", env=env)

    assert failed.returncode == 1
    [error] = error_lines(failed)
    assert error.startswith(
        f"error: push to 'acme/sim' failed: uploading data/episodes/{shard.name}: "
    )
    assert error.endswith("nothing was committed, run it again to retry")
    assert ("network failure" in error) is drop and ("the Hub answered 500" in error) is not drop
    # the storage URL (a signed link on the real Hub) stays out, retry warnings included
    assert "/lfs-storage/" not in failed.stdout + failed.stderr
    assert TOKEN not in failed.stdout + failed.stderr
    assert lfs_puts(hub).count(oid) > 1  # huggingface_hub retried before giving up
    repo = hub.repos["acme/sim"]
    assert repo.files == {} and repo.commits == [] and oid not in hub.lfs_objects

    hub.recover()
    tried = len(lfs_puts(hub))
    retried = export(str(run), "--to-hub", "acme/sim", env=env)

    assert retried.returncode == 0, retried.stderr
    assert lfs_puts(hub)[tried:] == [oid]  # the objects already stored are not sent again
    assert len(repo.commits) == 1 and repo.lfs == set(parquet_files(run))
    assert repo.files[f"data/episodes/{shard.name}"] == shard.read_bytes()


def test_xet_upload_to_a_hub_without_xet_names_the_switch(
    run: Path, lfs_hub: FakeHubServer, tmp_path: Path
) -> None:
    pytest.importorskip("hf_xet")  # with hf_xet installed, huggingface_hub always uploads by Xet
    env = hub_env(lfs_hub, tmp_path / "hf")
    env.pop("HF_HUB_DISABLE_XET", None)

    failed = export(str(run), "--to-hub", "acme/sim", env=env)

    assert failed.returncode == 1
    [error] = error_lines(failed)
    assert error.startswith("error: push to 'acme/sim' failed: network failure")
    assert "xet-write-token" in error and "HF_HUB_DISABLE_XET=1" in error
    assert TOKEN not in failed.stdout + failed.stderr
    assert lfs_hub.repos["acme/sim"].commits == [] and lfs_puts(lfs_hub) == []

    switched = export(str(run), "--to-hub", "acme/sim", env=env | {"HF_HUB_DISABLE_XET": "1"})

    assert switched.returncode == 0, switched.stderr
    assert lfs_hub.repos["acme/sim"].lfs == set(parquet_files(run))


def test_second_lfs_push_of_the_same_run_uploads_no_parquet_again(
    run: Path, lfs_hub: FakeHubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", lfs_hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    push_to_hub(run, "acme/sim")
    first = len(lfs_puts(lfs_hub))

    pushed = push_to_hub(run, "acme/sim")

    repo = lfs_hub.repos["acme/sim"]
    assert first == len(parquet_files(run)) and len(lfs_puts(lfs_hub)) == first
    assert len(repo.commits) == 2 and pushed.deleted == []
    assert repo.lfs == set(parquet_files(run))


def test_fake_lfs_storage_takes_only_the_announced_bytes(lfs_hub: FakeHubServer) -> None:
    """The fake Hub checks what the tests above rely on: an upload is stored only when its sha256
    and size are the ones announced, and a commit cannot name an object never uploaded."""
    data, auth = b"PAR1 some parquet bytes PAR1", {"Authorization": f"Bearer {TOKEN}"}
    oid = hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=lfs_hub.url, headers=auth) as client:
        client.post(
            "/api/repos/create", json={"organization": "acme", "name": "sim", "type": "dataset"}
        )
        batch = client.post(
            "/datasets/acme/sim.git/info/lfs/objects/batch",
            json={
                "operation": "upload",
                "transfers": ["basic"],
                "objects": [{"oid": oid, "size": len(data)}],
            },
        ).json()
        href = batch["objects"][0]["actions"]["upload"]["href"]
        commit = "\n".join(
            json.dumps(line)
            for line in [
                {"key": "header", "value": {"summary": "add"}},
                {"key": "lfsFile", "value": {"path": "x.parquet", "algo": "sha256", "oid": oid}},
            ]
        )

        assert client.post("/api/datasets/acme/sim/commit/main", content=commit).status_code == 400
        assert client.put(href, content=data[:-1] + b"!").status_code == 400
        assert client.put(href, content=data + b"!").status_code == 400
        assert oid not in lfs_hub.lfs_objects
        assert client.put(href, content=data).status_code == 200
        assert client.post("/api/datasets/acme/sim/commit/main", content=commit).status_code == 200

    assert batch["transfer"] == "basic"
    assert lfs_hub.repos["acme/sim"].files == {"x.parquet": data}


def test_a_failed_push_says_it_created_the_empty_repository(
    run: Path, hub_in_process: FakeHubServer
) -> None:
    hub_in_process.fail("commit", status=500)
    with pytest.raises(HubError, match=r"this push created acme/new, which stays empty"):
        push_to_hub(run, "acme/new")
    hub_in_process.fail("commit", status=500)
    with pytest.raises(HubError) as again:  # it exists now: nothing to say about creating it
        push_to_hub(run, "acme/new")
    assert "created" not in str(again.value)
