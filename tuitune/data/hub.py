"""Hub dataset names: recognising them, failing at once when offline, loading them when online."""

from __future__ import annotations

import os
import re
import socket
import threading
from urllib.parse import urlparse

from tuitune.errors import TuituneError

_HUB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_TRUE = {"1", "true", "yes", "on"}
PROBE_TIMEOUT_S = 2.0


def looks_like_hub_name(text: str) -> bool:
    """True for `owner/name` that is not an existing local path."""
    return bool(_HUB_NAME.fullmatch(text)) and not os.path.exists(text)


def offline_reason() -> str | None:
    """Why the hub cannot be reached, or None when it answered a quick connection probe."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var} is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    result: list[str | None] = ["no answer within %.0f s" % PROBE_TIMEOUT_S]

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                result[0] = None
        except OSError as exc:
            result[0] = f"{host} cannot be reached ({exc.strerror or exc})"

    # A thread bounds the DNS lookup too, which socket timeouts do not cover.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S + 0.5)
    return result[0]


def load_hub_dataset(name: str):
    """The `train` split (or only split) of a hub dataset as a `datasets.Dataset`."""
    reason = offline_reason()
    if reason is not None:
        raise TuituneError(
            f"'{name}' looks like a hub dataset name, but the hub is not reachable ({reason}). "
            f"Download it on a machine with internet (for example `datasets.load_dataset('{name}')"
            f".save_to_disk(...)` or a JSONL export), copy it here and pass the local path.")
    from datasets import DatasetDict, load_dataset

    try:
        loaded = load_dataset(name)
    except Exception as exc:  # the hub client raises many types; the message is what matters
        raise TuituneError(f"Cannot load the hub dataset '{name}': {exc}") from None
    if isinstance(loaded, DatasetDict):
        from tuitune.data.readers import pick_split

        loaded = pick_split(f"The hub dataset '{name}'", dict(loaded))
    return loaded
