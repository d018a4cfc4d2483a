"""What the machine has: GPUs through NVML (nvidia-ml-py), CPU, RAM and disk through psutil.

NVML is started lazily, once, and every query may be unsupported on some GPU or driver: a field
that cannot be read is None (shown as "n/a"), and no call here raises. GPUs are listed in CUDA's
order (honouring CUDA_VISIBLE_DEVICES), the order the trainer's `cuda:N` uses.
"""

from __future__ import annotations

import os
import platform
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

GIB = 1024**3


@dataclass
class GpuProcess:
    pid: int
    name: str
    used_gb: float | None


@dataclass
class GpuInfo:
    index: int  # CUDA ordinal (position among the visible devices)
    name: str | None
    uuid: str | None
    memory_total_gb: float | None
    memory_used_gb: float | None
    memory_free_gb: float | None
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None
    power_limit_w: float | None
    compute_capability: str | None
    processes: list[GpuProcess] = field(default_factory=list)
    nvml_index: int | None = None


@dataclass
class HostInfo:
    cpu_name: str | None
    cpu_count: int | None
    cpu_percent: float | None
    ram_total_gb: float | None
    ram_used_gb: float | None
    disk_total_gb: float | None
    disk_free_gb: float | None
    disk_path: str | None = None


@dataclass
class HardwareSnapshot:
    gpus: list[GpuInfo]
    host: HostInfo
    driver_version: str | None
    cuda_version: str | None
    nvml_error: str | None
    taken_at: float = 0.0

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)


class GpuSource(Protocol):
    def snapshot(self) -> HardwareSnapshot: ...


def best_free_gb(snapshot: HardwareSnapshot) -> float | None:
    """The most free memory on any one GPU (training uses one), or None with no readable GPU."""
    free = [g.memory_free_gb for g in snapshot.gpus if g.memory_free_gb is not None]
    return max(free) if free else None


# ---------------------------------------------------------------- host (psutil)


def _cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def _existing_ancestor(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def host_info(disk_path: str | os.PathLike | None = None, *, cpu_interval: float | None = None) -> HostInfo:
    """CPU, RAM and the disk holding the runs root; any figure that cannot be read is None.

    CPU load is measured since the previous call (the first reads 0); `cpu_interval` seconds of
    sampling give a one-shot caller a real figure.
    """
    from tuitune.paths import runs_root

    target = _existing_ancestor(Path(disk_path) if disk_path else runs_root())
    cpu_percent = ram_total = ram_used = None
    try:
        import psutil

        cpu_percent = psutil.cpu_percent(interval=cpu_interval)
        vm = psutil.virtual_memory()
        ram_total, ram_used = vm.total / GIB, (vm.total - vm.available) / GIB
    except Exception:  # psutil missing or unsupported here
        pass
    try:
        usage = shutil.disk_usage(target)
        disk_total, disk_free = usage.total / GIB, usage.free / GIB
    except OSError:
        disk_total = disk_free = None
    return HostInfo(_cpu_name(), os.cpu_count(), cpu_percent, ram_total, ram_used, disk_total, disk_free,
                    str(target))


# ---------------------------------------------------------------- NVML


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _nvml_error_message(exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, ImportError):
        return "NVML is unavailable (the nvidia-ml-py package is not installed)"
    if "LibraryNotFound" in name:
        return "No NVIDIA driver found (NVML library not found)"
    if "DriverNotLoaded" in name:
        return "The NVIDIA driver is not loaded (NVML could not start)"
    if "NoPermission" in name:
        return "No permission to query the NVIDIA driver (NVML)"
    return f"NVML could not start: {exc}"


def visible_device_order(env: str | None, count: int, uuid_of: Callable[[int], str | None]) -> list[int]:
    """NVML indices in CUDA's order, following CUDA_VISIBLE_DEVICES (indices or UUID prefixes).

    As CUDA does, the list stops at the first entry that names no device.
    """
    if env is None:
        return list(range(count))
    order: list[int] = []
    for token in (t.strip() for t in env.split(",")):
        if not token:
            break
        if token.lstrip("-").isdigit():
            index = int(token)
            if index < 0 or index >= count or index in order:
                break
            order.append(index)
            continue
        match = [i for i in range(count) if (uuid_of(i) or "").startswith(token) or
                 (uuid_of(i) or "").startswith("GPU-" + token)]
        if len(match) != 1 or match[0] in order:
            break
        order.append(match[0])
    return order


class NvmlSource:
    """Real GPUs through NVML. `snapshot()` never raises; NVML is started on first use, once."""

    def __init__(self, disk_path: str | os.PathLike | None = None, *, cpu_interval: float | None = None):
        self._disk_path = disk_path
        self._cpu_interval = cpu_interval
        self._lock = threading.Lock()
        self._started = False
        self._nvml = None
        self._error: str | None = None
        self._static: dict[int, dict] = {}

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except BaseException as exc:  # NVMLError subclasses, ImportError, OSError from ctypes
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self._error = _nvml_error_message(exc)

    def _q(self, fn: str, *args: Any) -> Any:
        """One NVML query; None when this GPU or driver does not support it."""
        try:
            return getattr(self._nvml, fn)(*args)
        except Exception:
            return None

    def snapshot(self) -> HardwareSnapshot:
        with self._lock:
            self._start()
            host = host_info(self._disk_path, cpu_interval=self._cpu_interval)
            if self._nvml is None:
                return HardwareSnapshot([], host, None, None, self._error, time.time())
            try:
                return self._gpu_snapshot(host)
            except Exception as exc:  # a driver failure mid-refresh: report it, keep the app alive
                return HardwareSnapshot([], host, None, None, f"NVML query failed: {exc}", time.time())

    def _gpu_snapshot(self, host: HostInfo) -> HardwareSnapshot:
        driver = self._q("nvmlSystemGetDriverVersion")
        cuda = self._q("nvmlSystemGetCudaDriverVersion_v2") or self._q("nvmlSystemGetCudaDriverVersion")
        count = self._q("nvmlDeviceGetCount") or 0
        handles = {i: self._q("nvmlDeviceGetHandleByIndex", i) for i in range(count)}
        order = visible_device_order(os.environ.get("CUDA_VISIBLE_DEVICES"), count,
                                     lambda i: self._static_of(i, handles[i]).get("uuid"))
        gpus = [self._gpu(cuda_index, nvml_index, handles[nvml_index])
                for cuda_index, nvml_index in enumerate(order) if handles[nvml_index] is not None]
        cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) and cuda > 0 else None
        return HardwareSnapshot(gpus, host, _text(driver) if driver else None, cuda_text, None, time.time())

    def _static_of(self, nvml_index: int, handle: Any) -> dict:
        """Name, UUID, compute capability and power limit: read once per device."""
        if nvml_index not in self._static and handle is not None:
            name, uuid = self._q("nvmlDeviceGetName", handle), self._q("nvmlDeviceGetUUID", handle)
            cc = self._q("nvmlDeviceGetCudaComputeCapability", handle)
            self._static[nvml_index] = {
                "name": _text(name) if name else None,
                "uuid": _text(uuid) if uuid else None,
                "cc": f"{cc[0]}.{cc[1]}" if isinstance(cc, tuple) and len(cc) == 2 else None,
            }
        return self._static.get(nvml_index, {})

    def _gpu(self, cuda_index: int, nvml_index: int, handle: Any) -> GpuInfo:
        static = self._static_of(nvml_index, handle)
        mem = self._q("nvmlDeviceGetMemoryInfo", handle)
        util = self._q("nvmlDeviceGetUtilizationRates", handle)
        temp = self._q("nvmlDeviceGetTemperature", handle, getattr(self._nvml, "NVML_TEMPERATURE_GPU", 0))
        power = self._q("nvmlDeviceGetPowerUsage", handle)
        limit = self._q("nvmlDeviceGetEnforcedPowerLimit", handle) or self._q("nvmlDeviceGetPowerManagementLimit",
                                                                             handle)
        return GpuInfo(
            index=cuda_index,
            name=static.get("name"),
            uuid=static.get("uuid"),
            memory_total_gb=mem.total / GIB if mem is not None else None,
            memory_used_gb=mem.used / GIB if mem is not None else None,
            memory_free_gb=mem.free / GIB if mem is not None else None,
            utilization_pct=float(util.gpu) if util is not None else None,
            temperature_c=float(temp) if temp is not None else None,
            power_w=power / 1000 if power is not None else None,
            power_limit_w=limit / 1000 if limit else None,
            compute_capability=static.get("cc"),
            processes=self._processes(handle),
            nvml_index=nvml_index,
        )

    def _processes(self, handle: Any) -> list[GpuProcess]:
        seen: dict[int, GpuProcess] = {}
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            for proc in self._q(fn, handle) or []:
                pid = int(getattr(proc, "pid", 0) or 0)
                used = getattr(proc, "usedGpuMemory", None)
                # NVML reports "not available" as a huge sentinel value (or None in newer bindings).
                used_gb = used / GIB if isinstance(used, int) and 0 <= used < (1 << 60) else None
                if pid not in seen:
                    seen[pid] = GpuProcess(pid, _process_name(pid), used_gb)
        return sorted(seen.values(), key=lambda p: -(p.used_gb or 0))


def _process_name(pid: int) -> str:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:  # another container's pid, or gone already
        return "?"


# ---------------------------------------------------------------- fakes (tests, UI tests, demos)

FAKE_HOST = HostInfo("Fake CPU @ 3.0GHz", 16, 12.5, 125.7, 31.4, 458.0, 211.3, "/fake/runs")


class FakeGpuSource:
    """Deterministic snapshots: each `snapshot()` returns the next one given and then repeats the last."""

    def __init__(self, snapshots: HardwareSnapshot | Sequence[HardwareSnapshot] | Sequence[GpuInfo] | None = None,
                 *, host: HostInfo | None = None):
        host = host or FAKE_HOST
        if snapshots is None:
            snapshots = []
        if isinstance(snapshots, HardwareSnapshot):
            snapshots = [snapshots]
        snapshots = list(snapshots)
        if snapshots and all(isinstance(s, GpuInfo) for s in snapshots):
            snapshots = [HardwareSnapshot(list(snapshots), host, "580.159.04", "13.0", None, 0.0)]
        if not snapshots:
            snapshots = [HardwareSnapshot([], host, None, None, "No NVIDIA driver found (NVML library not found)")]
        self._snapshots: list[HardwareSnapshot] = snapshots
        self._next = 0
        self.calls = 0

    def snapshot(self) -> HardwareSnapshot:
        self.calls += 1
        snap = self._snapshots[min(self._next, len(self._snapshots) - 1)]
        self._next += 1
        return snap

    @staticmethod
    def h200_gpu(index: int = 0, *, used_gb: float = 0.6, utilization_pct: float = 0.0,
                 processes: Iterable[GpuProcess] = ()) -> GpuInfo:
        total = 140.4
        return GpuInfo(index, "NVIDIA H200", f"GPU-00000000-0000-0000-0000-00000000000{index}", total, used_gb,
                       total - used_gb, utilization_pct, 35.0, 78.4, 700.0, "9.0", list(processes), index)

    @classmethod
    def h200(cls, count: int = 1, *, used_gb: float = 0.6, utilization_pct: float = 0.0,
             processes: Iterable[GpuProcess] = ()) -> "FakeGpuSource":
        procs = list(processes)
        return cls([cls.h200_gpu(i, used_gb=used_gb, utilization_pct=utilization_pct, processes=procs)
                    for i in range(count)])

    @classmethod
    def none(cls, message: str = "No NVIDIA driver found (NVML library not found)") -> "FakeGpuSource":
        return cls(HardwareSnapshot([], FAKE_HOST, None, None, message))

    @classmethod
    def unsupported(cls) -> "FakeGpuSource":
        """A GPU whose driver answers nothing beyond its name and memory (every other field n/a)."""
        gpu = GpuInfo(0, "NVIDIA Test GPU", None, 24.0, 2.0, 22.0, None, None, None, None, None, [], 0)
        return cls(HardwareSnapshot([gpu], replace(FAKE_HOST, cpu_percent=None), None, None, None))


def default_source(disk_path: str | os.PathLike | None = None, *, cpu_interval: float | None = None) -> GpuSource:
    """NVML, unless TUITUNE_FAKE_GPU=h200|none|unsupported asks for a fake (tests and demos)."""
    fake = os.environ.get("TUITUNE_FAKE_GPU", "").strip().lower()
    if fake == "h200":
        return FakeGpuSource.h200()
    if fake == "none":
        return FakeGpuSource.none()
    if fake == "unsupported":
        return FakeGpuSource.unsupported()
    return NvmlSource(disk_path, cpu_interval=cpu_interval)
