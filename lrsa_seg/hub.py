"""Where weights come from, and where shared models go: local paths, the Hugging Face Hub, http(s) URLs.

Sources: a local file or folder; ``hf://OWNER/REPO/PATH`` (one file of a Hub repository);
``hf://OWNER/REPO`` or ``OWNER/REPO`` (a repository saved by ``save_pretrained``: its
``config.json`` and ``model.safetensors``); an http(s) URL. Hub files go through
``huggingface_hub`` into its standard cache (``$HF_HOME/hub``); with ``HF_HUB_OFFLINE=1`` they are
served from that cache without any network access. URLs are downloaded once into
``$TORCH_HOME/hub/checkpoints`` (as ``torch.hub`` does) and read from there afterwards. Anything
else (``s3://`` ...) is returned unchanged for :func:`~lrsa_seg.io.torch_load`.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError

HF_SCHEME = "hf://"
CONFIG_FILE = "config.json"
"""A saved model's description (model name and kwargs, classes, preprocessing, provenance)."""
WEIGHTS_FILE = "model.safetensors"
"""A saved model's weights."""
CARD_FILE = "README.md"
"""A saved model's card (Hub metadata and a description)."""

_TRUE = ("1", "on", "yes", "true")


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face model repository (``filename`` None: the saved model the repository holds)."""

    repo_id: str
    filename: str | None
    revision: str | None = None

    @property
    def url(self) -> str:
        """The file's download address on huggingface.co."""
        return f"https://huggingface.co/{self.repo_id}/resolve/{self.revision or 'main'}/{self.filename or ''}"


def parse_hf_source(source: str) -> HubFile:
    """``hf://OWNER/REPO[/PATH]`` -> :class:`HubFile`; a revision is ``REPO@REVISION[/PATH]`` or ``PATH@REVISION``."""
    match = re.fullmatch(r"hf://([^/@]+)/([^/@]+)(?:@([^/]+))?(?:/([^@]+)(?:@([^/]+))?)?/?", source)
    if match is None or (match.group(3) and match.group(5)):
        raise CheckpointError(
            f"{source}: a Hub source is hf://OWNER/REPO (a saved model) or hf://OWNER/REPO/PATH (one file), "
            "optionally followed by @REVISION"
        )
    owner, repo, revision, filename, trailing = match.groups()
    return HubFile(f"{owner}/{repo}", filename, revision or trailing)


_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_FILE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".json")


def is_repo_id(source: str) -> bool:
    """Whether ``source`` reads as a Hub repository id ``OWNER/REPO``: no local path, no weights-file name."""
    return (
        _REPO_ID.fullmatch(source) is not None
        and not source.lower().endswith(_FILE_SUFFIXES)
        and not Path(source).exists()
    )


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set now (read at each call, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_cache_dir() -> Path:
    """The Hub cache ``huggingface_hub`` uses: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub`` (read at each call)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def url_cache_path(url: str) -> Path:
    """Where an http(s) URL is kept once downloaded: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    import torch.hub

    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise CheckpointError(f"{url}: the URL names no file")
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _download_hub_file(file: HubFile, source: str) -> Path:
    if file.filename is None:  # a saved model: its description and weights, side by side in the snapshot
        config = _download_hub_file(HubFile(file.repo_id, CONFIG_FILE, file.revision), source)
        _download_hub_file(HubFile(file.repo_id, WEIGHTS_FILE, file.revision), source)
        return config.parent
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = hub_offline()
    try:
        return Path(
            hf_hub_download(
                file.repo_id,
                file.filename,
                revision=file.revision,
                cache_dir=hub_cache_dir(),
                local_files_only=offline,
            )
        )
    except RepositoryNotFoundError as err:
        raise CheckpointError(f"{source}: no Hub repository {file.repo_id} (or it is private)") from err
    except RevisionNotFoundError as err:
        raise CheckpointError(f"{source}: repository {file.repo_id} has no revision {file.revision}") from err
    except LocalEntryNotFoundError as err:  # not cached, and offline or no network
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
        raise CheckpointError(
            f"{source}: file {file.filename} of repository {file.repo_id} is not in the Hub cache "
            f"({hub_cache_dir()}) and {why}; download {file.url} on a machine with network and pass "
            "the local file's path instead"
        ) from err
    except EntryNotFoundError as err:
        raise CheckpointError(
            f"{source}: repository {file.repo_id} has no file {file.filename} "
            f"(list them: lrsa-seg weights list --repo {file.repo_id})"
        ) from err
    except OSError as err:  # network errors (httpx and requests errors are OSErrors or wrapped in them)
        raise CheckpointError(
            f"{source}: file {file.filename} of repository {file.repo_id} could not be downloaded ({err}); "
            f"download {file.url} by hand and pass the local file's path instead"
        ) from err


def _download_url(url: str) -> Path:
    import torch.hub

    path = url_cache_path(url)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except (OSError, ValueError) as err:  # URLError is an OSError
        raise CheckpointError(
            f"{url} could not be downloaded ({err}); download it by hand and put it at {path}"
        ) from err
    return path


def resolve_source(source: str | os.PathLike[str]) -> str | Path:
    """The local file or folder of a weights source: Hub files and URLs are fetched (or found in their cache).

    Args:
        source: a local file or folder, ``hf://OWNER/REPO[/PATH][@REVISION]``, ``OWNER/REPO`` (not
            an existing local path), an http(s) URL, or an fsspec URL.

    Returns:
        A local path (a Hub repository: the snapshot folder holding its ``config.json`` and
        ``model.safetensors``), or the fsspec URL unchanged. A file that is neither reachable nor
        cached raises :class:`CheckpointError` naming the repository and file and what to do instead.
    """
    text = os.fspath(source)
    if text.startswith(HF_SCHEME):
        return _download_hub_file(parse_hf_source(text), text)
    if isinstance(source, str) and is_repo_id(text):
        try:
            return _download_hub_file(HubFile(text, None), text)
        except CheckpointError as err:  # perhaps a local path with a typo: say both readings
            raise CheckpointError(f"{err} (and {text} is no local file or folder)") from err
    if text.startswith(("http://", "https://")):
        return _download_url(text)
    return source if isinstance(source, Path) else text


def list_hub_files(repo_id: str, revision: str | None = None) -> list[str]:
    """The files of a Hub model repository (needs the network; offline: :class:`CheckpointError`)."""
    if hub_offline():
        raise CheckpointError(
            f"--repo {repo_id}: listing a Hub repository needs the network, and HF_HUB_OFFLINE is set"
        )
    from huggingface_hub import list_repo_files
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return sorted(list_repo_files(repo_id, revision=revision))
    except RepositoryNotFoundError as err:
        raise CheckpointError(f"--repo {repo_id}: no such Hub repository (or it is private)") from err
    except RevisionNotFoundError as err:
        raise CheckpointError(f"--revision {revision}: repository {repo_id} has no such revision") from err
    except (HfHubHTTPError, OSError) as err:
        raise CheckpointError(f"--repo {repo_id}: the Hub cannot be reached ({err})") from err


def push_folder(folder: str | os.PathLike[str], repo_id: str, private: bool = False, message: str | None = None) -> str:
    """Upload a saved model's folder to a Hub model repository (created if absent); returns the commit's address.

    Needs the network and a token (``hf auth login`` or ``HF_TOKEN``); offline it is a
    :class:`CheckpointError`, as is any refusal of the Hub, naming the repository.
    """
    if hub_offline():
        raise CheckpointError(f"{repo_id}: pushing to the Hub needs the network, and HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=os.fspath(folder), commit_message=message or "Upload LRFormer (lrsa-seg)"
        )
    except (HfHubHTTPError, OSError) as err:
        raise CheckpointError(f"{repo_id}: the upload to the Hub failed ({err})") from err
    return str(getattr(commit, "commit_url", commit))
