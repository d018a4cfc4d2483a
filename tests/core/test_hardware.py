"""Hardware snapshots: fakes, NVML absent, NVML answering only part of the queries, device order."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from tuitune import hardware
from tuitune.hardware import (FakeGpuSource, GpuInfo, GpuProcess, HardwareSnapshot, NvmlSource, best_free_gb,
                              default_source, visible_device_order)

GIB = 1024**3


def test_fake_sources_are_deterministic():
    src = FakeGpuSource.h200(count=2, used_gb=10.0, processes=[GpuProcess(42, "python", 9.5)])
    snap = src.snapshot()
    assert [g.index for g in snap.gpus] == [0, 1]
    assert snap.gpus[0].name == "NVIDIA H200" and snap.gpus[0].compute_capability == "9.0"
    assert snap.gpus[0].memory_free_gb == pytest.approx(130.4)
    assert snap.gpus[0].processes[0].pid == 42
    assert snap.nvml_error is None and snap.has_gpu
    assert src.snapshot() == snap and src.calls == 2
    none = FakeGpuSource.none().snapshot()
    assert not none.has_gpu and "NVML library not found" in none.nvml_error
    assert best_free_gb(none) is None


def test_fake_source_steps_through_snapshots():
    a = HardwareSnapshot([FakeGpuSource.h200_gpu(used_gb=1.0)], hardware.FAKE_HOST, "1", "13.0", None)
    b = HardwareSnapshot([FakeGpuSource.h200_gpu(used_gb=50.0)], hardware.FAKE_HOST, "1", "13.0", None)
    src = FakeGpuSource([a, b])
    assert [src.snapshot().gpus[0].memory_used_gb for _ in range(3)] == [1.0, 50.0, 50.0]
    only_gpus = FakeGpuSource([FakeGpuSource.h200_gpu(0), FakeGpuSource.h200_gpu(1, used_gb=100.0)])
    assert best_free_gb(only_gpus.snapshot()) == pytest.approx(139.8)


def test_best_free_ignores_unreadable_gpus():
    unreadable = GpuInfo(0, "x", None, None, None, None, None, None, None, None, None)
    snap = HardwareSnapshot([unreadable, FakeGpuSource.h200_gpu(1, used_gb=40.0)], hardware.FAKE_HOST,
                            None, None, None)
    assert best_free_gb(snap) == pytest.approx(100.4)


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


def _fake_pynvml(monkeypatch, *, init_error=None, devices=(), unsupported=()) -> types.ModuleType:
    """A stand-in pynvml: `devices` are dicts; names in `unsupported` raise NVMLError."""
    mod = types.ModuleType("pynvml")
    mod.NVML_TEMPERATURE_GPU = 0
    mod.init_calls = 0

    def init():
        mod.init_calls += 1
        if init_error:
            raise init_error

    def q(name, fn):
        def call(*args):
            if name in unsupported:
                raise NVMLError(f"{name} not supported")
            return fn(*args)
        setattr(mod, name, call)

    @dataclass
    class Mem:
        total: int
        used: int
        free: int

    @dataclass
    class Util:
        gpu: int
        memory: int

    @dataclass
    class Proc:
        pid: int
        usedGpuMemory: int | None

    mod.nvmlInit = init
    q("nvmlSystemGetDriverVersion", lambda: "580.159.04")
    q("nvmlSystemGetCudaDriverVersion_v2", lambda: 13000)
    q("nvmlDeviceGetCount", lambda: len(devices))
    q("nvmlDeviceGetHandleByIndex", lambda i: i)
    q("nvmlDeviceGetName", lambda h: devices[h]["name"].encode())
    q("nvmlDeviceGetUUID", lambda h: devices[h]["uuid"])
    q("nvmlDeviceGetCudaComputeCapability", lambda h: (9, 0))
    q("nvmlDeviceGetMemoryInfo", lambda h: Mem(80 * GIB, devices[h]["used"] * GIB, (80 - devices[h]["used"]) * GIB))
    q("nvmlDeviceGetUtilizationRates", lambda h: Util(37, 10))
    q("nvmlDeviceGetTemperature", lambda h, kind: 51)
    q("nvmlDeviceGetPowerUsage", lambda h: 250_000)
    q("nvmlDeviceGetEnforcedPowerLimit", lambda h: 700_000)
    q("nvmlDeviceGetComputeRunningProcesses", lambda h: [Proc(4242, 3 * GIB), Proc(4343, 2**64 - 1)])
    q("nvmlDeviceGetGraphicsRunningProcesses", lambda h: [])
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    return mod


def test_nvml_absent_gives_an_error_not_a_crash(monkeypatch):
    mod = _fake_pynvml(monkeypatch, init_error=NVMLError_LibraryNotFound("libnvidia-ml.so.1 not found"))
    src = NvmlSource()
    snap = src.snapshot()
    assert snap.gpus == [] and snap.nvml_error == "No NVIDIA driver found (NVML library not found)"
    assert snap.host.cpu_count and snap.host.ram_total_gb > 0
    src.snapshot()
    assert mod.init_calls == 1, "NVML is started once"


def test_nvml_package_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    snap = NvmlSource().snapshot()
    assert snap.gpus == [] and "nvidia-ml-py" in snap.nvml_error


def test_nvml_reads_every_field(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _fake_pynvml(monkeypatch, devices=[{"name": "NVIDIA A100", "uuid": "GPU-aaa", "used": 20}])
    snap = NvmlSource().snapshot()
    assert snap.driver_version == "580.159.04" and snap.cuda_version == "13.0" and snap.nvml_error is None
    gpu = snap.gpus[0]
    assert (gpu.name, gpu.uuid, gpu.compute_capability) == ("NVIDIA A100", "GPU-aaa", "9.0")
    assert (gpu.memory_total_gb, gpu.memory_used_gb, gpu.memory_free_gb) == (80, 20, 60)
    assert (gpu.utilization_pct, gpu.temperature_c, gpu.power_w, gpu.power_limit_w) == (37, 51, 250, 700)
    assert [(p.pid, p.used_gb) for p in gpu.processes] == [(4242, 3.0), (4343, None)]


def test_unsupported_queries_become_none(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _fake_pynvml(monkeypatch, devices=[{"name": "Old GPU", "uuid": "GPU-old", "used": 1}],
                 unsupported={"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetTemperature", "nvmlDeviceGetPowerUsage",
                              "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetCudaComputeCapability",
                              "nvmlDeviceGetComputeRunningProcesses", "nvmlSystemGetCudaDriverVersion_v2"})
    gpu = NvmlSource().snapshot().gpus[0]
    assert gpu.name == "Old GPU" and gpu.memory_free_gb == 79
    assert gpu.utilization_pct is None and gpu.temperature_c is None and gpu.power_w is None
    assert gpu.power_limit_w is None and gpu.compute_capability is None and gpu.processes == []


def test_cuda_visible_devices_order(monkeypatch):
    devices = [{"name": f"GPU{i}", "uuid": f"GPU-{i}{i}{i}", "used": i} for i in range(3)]
    _fake_pynvml(monkeypatch, devices=devices)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    snap = NvmlSource().snapshot()
    assert [(g.index, g.nvml_index, g.name) for g in snap.gpus] == [(0, 2, "GPU2"), (1, 0, "GPU0")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert NvmlSource().snapshot().gpus == []


def test_visible_device_order_rules():
    uuids = ["GPU-abc", "GPU-def", "GPU-123"]
    uuid_of = uuids.__getitem__
    assert visible_device_order(None, 3, uuid_of) == [0, 1, 2]
    assert visible_device_order("1", 3, uuid_of) == [1]
    assert visible_device_order("GPU-def,0", 3, uuid_of) == [1, 0]
    assert visible_device_order("def", 3, uuid_of) == [1]
    assert visible_device_order("0,7,1", 3, uuid_of) == [0]  # CUDA stops at an invalid entry
    assert visible_device_order("-1", 3, uuid_of) == []
    assert visible_device_order("0,0", 3, uuid_of) == [0]


def test_default_source_env(monkeypatch):
    monkeypatch.setenv("TUITUNE_FAKE_GPU", "h200")
    assert default_source().snapshot().gpus[0].name == "NVIDIA H200"
    monkeypatch.setenv("TUITUNE_FAKE_GPU", "none")
    assert not default_source().snapshot().has_gpu
    monkeypatch.delenv("TUITUNE_FAKE_GPU")
    assert isinstance(default_source(), NvmlSource)


def test_real_source_never_raises_here():
    snap = NvmlSource().snapshot()  # on a machine without a GPU this exercises the real library path
    assert isinstance(snap, HardwareSnapshot)
    assert snap.has_gpu or snap.nvml_error


def test_core_modules_import_without_torch():
    import subprocess

    code = ("import sys, tuitune.catalog, tuitune.fit, tuitune.hardware, tuitune.cli.gpu, tuitune.cli.models, "
            "tuitune.cli.bench, tuitune.bench.runner; "
            "bad = [m for m in ('torch', 'transformers', 'pynvml', 'textual', 'psutil', 'gguf') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
