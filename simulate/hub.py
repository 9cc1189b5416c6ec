"""Push a run or a golden set to the Hugging Face Hub as a dataset repository, in one commit.

    README.md                                  the dataset card (simulate.card)
    data/episodes/<shard>.parquet              config `episodes`: the transcripts
    data/labels/<shard>.parquet                config `labels`, when the run is labeled
    data/golden/<split>-00000-of-00001.parquet config `golden`, when RUN/golden exists

A golden folder (what `simulate golden` writes) pushes its splits alone, as config `golden`.
The repository is created private unless asked otherwise; every file goes up in ONE commit that
also deletes the repository's data files this push no longer has, so a second push replaces
rows instead of adding to them, and a push that fails changes nothing a retry would trip over.
The token comes from `HF_TOKEN` or `hf auth login` (never a flag), `HF_ENDPOINT` names a
private Hub mirror, and errors are one line without the token. Parquet files go up the way the
Hub asks for binary files: by Xet when hf_xet is installed (huggingface_hub then never asks the
server), else by Git LFS; a mirror without Xet storage needs `HF_HUB_DISABLE_XET=1`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulate.errors import ConfigError, RunFolderError, SimulateError
from simulate.store import EPISODES, LABELS, MANIFEST, RunFolder, parquet_rows

GOLDEN = "golden"
NO_TOKEN = "no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)"


class HubError(SimulateError):
    """The Hub (or the network on the way) refused or failed a push."""


@dataclass
class Upload:
    """What one push sends: files by their path in the repository, and the card."""

    files: dict[str, Path]
    card: str
    rows: dict[str, dict[str, int]]
    """Config -> split -> rows."""
    license: str
    warnings: list[str] = field(default_factory=list)
    title: str = ""


@dataclass
class PushResult:
    """What `push_to_hub` committed."""

    repo_id: str
    repo_url: str
    commit_url: str
    private: bool
    files: list[str]
    deleted: list[str]
    rows: dict[str, dict[str, int]]
    license: str
    warnings: list[str] = field(default_factory=list)


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when it is a Hub `owner/name`, else a one-line ConfigError."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    owner, slash, name = repo_id.partition("/")
    problem = None if owner and slash and name else "needs an owner: owner/name"
    if problem is None:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as exc:
            problem = str(exc).strip().splitlines()[0]
    if problem:
        raise ConfigError(
            f"--to-hub {repo_id!r} is not a Hub dataset name ({problem}); "
            "give owner/name, e.g. acme/support-sim"
        )
    return repo_id


def prepare_upload(
    source: str | Path, *, repo_id: str | None = None, license: str | None = None
) -> Upload:
    """The files and card a push of ``source`` (a run folder or a golden folder) sends.

    Raises RunFolderError when ``source`` is neither, or has no episodes.
    """
    folder = Path(source)
    if (folder / MANIFEST).is_file():
        return _run_upload(folder, repo_id, license)
    if (folder / "README.md").is_file() and list((folder / "data").glob("*.parquet")):
        return _golden_upload(folder, repo_id, license)
    RunFolder.open(folder)  # the usual "no such run folder" / "not a run folder" error
    raise RunFolderError(f"{str(folder)!r} is not a run folder")  # pragma: no cover


def _run_upload(run_dir: Path, repo_id: str | None, license: str | None) -> Upload:
    from simulate.card import render_run_card
    from simulate.label.agreement import agreement_for_card

    folder = RunFolder.open(run_dir)
    episodes = folder.shards(EPISODES)
    if not episodes or not _rows(episodes):
        raise RunFolderError(f"run {str(run_dir)!r} has no episodes to push")
    files = {f"data/{EPISODES}/{p.name}": p for p in episodes}
    data_files: dict[str, dict[str, str]] = {EPISODES: {"train": f"data/{EPISODES}/*.parquet"}}
    rows = {EPISODES: {"train": _rows(episodes)}}
    labels = folder.shards(LABELS)
    if labels:
        files |= {f"data/{LABELS}/{p.name}": p for p in labels}
        data_files[LABELS] = {"train": f"data/{LABELS}/*.parquet"}
        rows[LABELS] = {"train": _rows(labels)}
    golden = _golden_splits(run_dir / GOLDEN)
    if golden:
        files |= {f"data/{GOLDEN}/{p.name}": p for p in golden.values()}
        data_files[GOLDEN] = {s: f"data/{GOLDEN}/{s}-*.parquet" for s in golden}
        rows[GOLDEN] = {s: _rows([p]) for s, p in golden.items()}
    agreement = agreement_for_card(folder.path) if labels else []
    made = render_run_card(
        run_dir, data_files, repo_id=repo_id, license=license, agreement=agreement
    )
    return Upload(
        files=files,
        card=str(made.card),
        rows=rows,
        license=made.license,
        warnings=made.warnings,
        title=f"run {folder.manifest.run_id or run_dir.name}",
    )


def _golden_upload(golden_dir: Path, repo_id: str | None, license: str | None) -> Upload:
    from simulate.card import check_license, golden_card_for_hub

    splits = _golden_splits(golden_dir)
    data_files = {GOLDEN: {s: f"data/{GOLDEN}/{s}-*.parquet" for s in splits}}
    card = golden_card_for_hub(golden_dir, data_files, repo_id)
    if license is not None:
        card.data.license = check_license(license)
    return Upload(
        files={f"data/{GOLDEN}/{p.name}": p for p in splits.values()},
        card=str(card),
        rows={GOLDEN: {s: _rows([p]) for s, p in splits.items()}},
        license=str(card.data.license),
        title=f"golden set {golden_dir.resolve().parent.name}",
    )


def _golden_splits(golden_dir: Path) -> dict[str, Path]:
    """Split name -> parquet file of a golden folder (`data/<split>-00000-of-00001.parquet`)."""
    paths = sorted((golden_dir / "data").glob("*.parquet")) if golden_dir.is_dir() else []
    order = {"train": 0, "validation": 1, "test": 2}
    splits = {p.name.split("-")[0]: p for p in paths}
    return dict(sorted(splits.items(), key=lambda item: (order.get(item[0], 3), item[0])))


def _rows(paths: list[Path]) -> int:
    return parquet_rows(paths)


def push_to_hub(
    source: str | Path,
    repo_id: str,
    *,
    public: bool = False,
    license: str | None = None,
) -> PushResult:
    """Create (or reuse) the dataset repository ``repo_id`` and commit ``source`` to it.

    Args:
        source: A run folder or a golden folder.
        repo_id: `owner/name` on the Hub (or the mirror `HF_ENDPOINT` names).
        public: Create the repository public; it is private otherwise. An existing repository
            keeps its visibility; pushing to an existing public one needs ``public``, so a run
            is never published by mistake.
        license: Licence id for the card; None picks one (`simulate.card.choose_license`).

    Raises:
        ConfigError: a bad ``repo_id`` or licence, or no token.
        RunFolderError: ``source`` is not a run or golden folder, or has no episodes.
        HubError: the Hub or the network failed, or the repository is public and
            ``public`` was not given; nothing was committed (the message says when the push
            created the repository, which then stays empty).
    """
    check_repo_id(repo_id)
    upload = prepare_upload(source, repo_id=repo_id, license=license)
    from huggingface_hub import (
        CommitOperationAdd,
        CommitOperationDelete,
        HfApi,
        constants,
        get_token,
    )

    token = get_token()
    if not token:
        raise ConfigError(NO_TOKEN)
    endpoint = os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token, library_name="simulate")
    created = False
    try:
        with _quiet_retries():
            existed = api.repo_exists(repo_id, repo_type="dataset")
            if existed and not public and not api.repo_info(repo_id, repo_type="dataset").private:
                raise HubError(
                    f"{repo_id} is a public repository: pushing would publish this data; "
                    "pass --public to push to it anyway"
                )
            repo_url = api.create_repo(
                repo_id, repo_type="dataset", private=not public, exist_ok=True
            )
            created = not existed
            private = bool(api.repo_info(repo_id, repo_type="dataset").private)
            existing = api.list_repo_files(repo_id, repo_type="dataset")
            stale = sorted(p for p in existing if p.startswith("data/") and p not in upload.files)
            operations: list[Any] = [CommitOperationAdd("README.md", upload.card.encode("utf-8"))]
            operations += [
                CommitOperationAdd(path, str(local)) for path, local in upload.files.items()
            ]
            operations += [CommitOperationDelete(path) for path in stale]
            commit = api.create_commit(
                repo_id,
                operations,
                repo_type="dataset",
                commit_message=f"Upload {upload.title} with simulate",
                commit_description=_describe(upload.rows),
            )
    except _network_errors() as exc:
        raise HubError(_one_line(exc, repo_id, endpoint, token, created=created)) from None
    except RuntimeError as exc:
        # A failed LFS upload (the PUT of a parquet file to the storage the Hub names) comes
        # wrapped: RuntimeError("Error while uploading 'PATH' to the Hub.") from the HTTP error.
        uploading = re.search(r"uploading '([^']+)'", str(exc))
        if uploading is None or not isinstance(exc.__cause__, _network_errors()):
            raise
        raise HubError(
            _one_line(
                exc.__cause__,
                repo_id,
                endpoint,
                token,
                uploading=uploading.group(1),
                created=created,
            )
        ) from None
    return PushResult(
        repo_id=repo_id,
        repo_url=str(repo_url),
        commit_url=commit.commit_url,
        private=private,
        files=["README.md", *upload.files],
        deleted=stale,
        rows=upload.rows,
        license=upload.license,
        warnings=upload.warnings
        + (
            [f"{repo_id} already existed and stays {'private' if private else 'public'}"]
            if private == public
            else []
        ),
    )


def _describe(rows: dict[str, dict[str, int]]) -> str:
    return "; ".join(
        f"{config}: " + ", ".join(f"{split} {n}" for split, n in splits.items())
        for config, splits in rows.items()
    )


@contextlib.contextmanager
def _quiet_retries() -> Iterator[None]:
    """huggingface_hub's retry warnings quote storage URLs (signed links on the real Hub): keep
    them out of the terminal; a push that fails for good says why in one line."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a push through huggingface_hub raises when the Hub or the network fails.

    `HfHubHTTPError` for answers; the HTTP client's own transport errors (httpx2, httpx, or
    requests, which derive from OSError) for a refused or dropped connection; ValueError for a
    card the Hub's YAML check refuses.
    """
    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [HfHubHTTPError, OSError, ValueError]
    for client in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(client).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _one_line(
    exc: BaseException,
    repo_id: str,
    endpoint: str,
    token: str,
    uploading: str | None = None,
    created: bool = False,
) -> str:
    """The failure as one line, naming the repository and the fix, with no token in it.

    ``uploading``: the file whose LFS upload failed. That upload goes to the storage URL the Hub
    handed out (signed, without the token), so its URL is never quoted and a 401/403 there is
    not the token's fault.
    """
    from huggingface_hub.errors import HfHubHTTPError

    status = None
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if status in (401, 403) and uploading is None:
        why = f"the Hub refused the token ({status}); check HF_TOKEN or `hf auth login`"
    elif status is not None:
        server = getattr(exc, "server_message", None) or ""
        why = f"the Hub answered {status}" + (f": {' '.join(server.split())}" if server else "")
    elif isinstance(exc, ValueError):
        why = detail
    else:
        why = f"network failure talking to {endpoint} ({type(exc).__name__}: {detail})"
        if "xet-write-token" in detail:  # huggingface_hub uploads by Xet whenever hf_xet is here
            why += "; a Hub without Xet storage needs HF_HUB_DISABLE_XET=1 (uploads by Git LFS)"
    if uploading is not None:
        why = f"uploading {uploading}: {why}"
    if created:
        why += f" (this push created {repo_id}, which stays empty until a push succeeds)"
    message = f"push to {repo_id!r} failed: {why}; nothing was committed, run it again to retry"
    return message.replace(token, "***")
