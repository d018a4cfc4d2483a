"""The trainer's view of the machine: the device facts probed with torch, and torch dtypes by name.

The decisions made from the facts live in tuitune.plan (torch-free, shared with the form's fit check).
"""

from __future__ import annotations

import os

from tuitune.plan import DeviceFacts


def probe_device() -> DeviceFacts:
    import torch

    if not torch.cuda.is_available():
        return DeviceFacts(False, bnb_optimizers=_bnb_optimizers_work(), cpu_count=os.cpu_count())
    free, _total = torch.cuda.mem_get_info(0)
    return DeviceFacts(True, torch.cuda.get_device_name(0), torch.cuda.is_bf16_supported(),
                       _bnb_optimizers_work(), os.cpu_count(), free / 1024**3)


def _bnb_optimizers_work() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:
        return False
    return True


def torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]
