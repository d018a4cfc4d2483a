"""The text of the distributed config fields: `training.gpus` (a count or device ids) and a rendezvous
endpoint (`host:port`). Pure parsing, shared by config validation, the CLI and the launch plan."""

from __future__ import annotations

from typing import Any

MODES = ("none", "ddp", "fsdp", "zero2", "zero3")
SHARDED_WEIGHTS = ("fsdp", "zero3")  # the modes that split the weights themselves over the GPUs
DEFAULT_PORT = 29500  # torchrun's default rendezvous port


def parse_gpus(value: Any) -> tuple[int, tuple[int, ...] | None]:
    """(count, device ids or None). `2` or "2" is a count; "0,1", "3," or [0, 1] are CUDA device ids.
    ValueError with the reason for anything else."""
    if isinstance(value, bool):
        raise ValueError("a count or device ids, not true/false")
    if isinstance(value, int):
        ids = None
        count = value
    elif isinstance(value, (list, tuple)):
        ids = tuple(_device_id(v) for v in value)
        count = len(ids)
    elif isinstance(value, str):
        text = value.strip().strip("[]").strip()
        if "," in text:
            ids = tuple(_device_id(v) for v in text.split(",") if v.strip())
            count = len(ids)
        else:
            try:
                count, ids = int(text), None
            except ValueError:
                raise ValueError(f"a count like 2 or device ids like 0,1; got {value!r}") from None
    else:
        raise ValueError(f"a count like 2 or device ids like 0,1; got {value!r}")
    if count < 1:
        raise ValueError(f"at least 1 GPU; got {value!r}")
    if count > 64:
        raise ValueError(f"at most 64 GPUs per machine; got {count}")
    if ids is not None and len(set(ids)) != len(ids):
        raise ValueError(f"each device id once; got {value!r}")
    return count, ids


def _device_id(value: Any) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"device ids are whole numbers like 0,1; got {value!r}") from None
    if number < 0 or number > 63:
        raise ValueError(f"device ids are 0 to 63; got {number}")
    return number


def gpus_text(value: Any) -> str:
    """The canonical text of `training.gpus`: "2" for a count, "0,1" for device ids ("3," for one id)."""
    count, ids = parse_gpus(value)
    if ids is None:
        return str(count)
    return ",".join(str(i) for i in ids) + ("," if len(ids) == 1 else "")


def check_gpus(value: Any) -> tuple[Any, str | None]:
    """The config check of `training.gpus`: (canonical text, problem or None)."""
    try:
        return gpus_text(value), None
    except ValueError as exc:
        return value, f"training.gpus must be {exc}"


def parse_endpoint(text: str) -> tuple[str, int]:
    """(host, port) of `host:port` or `host` (port 29500); `[::1]:port` for IPv6. ValueError otherwise."""
    text = text.strip()
    if not text:
        raise ValueError("empty")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"no host name in {text!r}")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the port of {text!r} must be 1 to 65535")
    return host, int(port_text)


def check_endpoint(value: Any) -> tuple[Any, str | None]:
    """The config check of `training.rdzv_endpoint` (empty: this machine)."""
    if not isinstance(value, str):
        return value, f"training.rdzv_endpoint must be text like node0.example:29500, got {value!r}"
    if not value.strip():
        return "", None
    try:
        host, port = parse_endpoint(value)
    except ValueError as exc:
        return value, f"training.rdzv_endpoint must be host:port (e.g. node0.example:29500): {exc}"
    return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}"), None
