"""Upload a verified export to the Hugging Face Hub with huggingface_hub's `upload_folder`.

The token comes from $HF_TOKEN or the saved login (`hf auth login`), is handed to the hub client
only, and is never written, logged, put in an event or echoed in an error (messages are scrubbed).
Preconditions (a repo id, a token, a reachable hub) are checked before the export starts.
"""

from __future__ import annotations

import re
from pathlib import Path

from tuitune.errors import TuituneError

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


def check_repo_id(repo: str) -> None:
    if not _REPO_ID.fullmatch(repo or "") or ".." in repo or repo.endswith((".", "-")):
        raise TuituneError(f"--push {repo!r} is not a hub repo id. Use owner/name, for example "
                           "your-user/smollm2-pirate (letters, digits, '-', '_' and '.').")


def hub_token() -> str | None:
    """$HF_TOKEN, else the token saved by `hf auth login`; None when there is neither."""
    from huggingface_hub import get_token

    token = get_token()
    return token.strip() if token and token.strip() else None


def check_push(repo: str) -> str:
    """The token to push with, or a TuituneError at once (bad repo id, no token, hub unreachable)."""
    from tuitune.data.hub import offline_reason

    check_repo_id(repo)
    token = hub_token()
    if token is None:
        raise TuituneError(f"Cannot push to {repo}: no Hugging Face token. Set HF_TOKEN to a token with write "
                           "access (https://huggingface.co/settings/tokens) or run `hf auth login`, then try "
                           "again. Nothing was exported or uploaded.")
    reason = offline_reason()
    if reason is not None:
        raise TuituneError(f"Cannot push to {repo}: the Hugging Face Hub is not reachable ({reason}). Export "
                           "without --push now and push the folder later from a machine that is online. "
                           "Nothing was exported or uploaded.")
    return token


def push_folder(folder: Path, repo: str, token: str, *, message: str) -> str:
    """Create the repo if needed and upload the folder; the repo's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo, repo_type="model", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model", commit_message=message)
    except Exception as exc:  # the hub client raises many types; the message is what matters
        text = str(exc).replace(token, "***")
        raise TuituneError(f"Uploading {folder} to {repo} failed: {text}. The export itself is complete; "
                           "check the repo name and that the token can write to it.") from None
    return f"https://huggingface.co/{repo}"
