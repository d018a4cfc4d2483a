"""`tuitune gpu`: what the GPU screen shows, as plain text (works with no GPU at all)."""

from __future__ import annotations

import argparse

from tuitune.hardware import GpuInfo, HardwareSnapshot, HostInfo, default_source


def register(subparsers) -> None:
    p = subparsers.add_parser("gpu", help="show the GPUs, their memory and processes, and the host",
                              description="Show each GPU (memory, utilisation, temperature, power, compute "
                                          "capability, processes) and the host's CPU, RAM and disk. With no "
                                          "GPU, say so and show what training on the CPU will use.")
    p.add_argument("--runs-dir", metavar="DIR", help="report free disk space for this runs root")
    p.set_defaults(func=run)


def na(value, fmt: str = "{:.1f}", unit: str = "") -> str:
    """A reading, or n/a when the driver does not report it."""
    if value is None:
        return "n/a"
    return fmt.format(value) + unit


def gpu_lines(gpu: GpuInfo) -> list[str]:
    cc = f"compute capability {gpu.compute_capability}" if gpu.compute_capability else "compute capability n/a"
    lines = [f"GPU {gpu.index}  {gpu.name or 'n/a'}  ({cc})  {gpu.uuid or ''}".rstrip()]
    lines.append(f"  memory   {na(gpu.memory_used_gb)} GiB used, {na(gpu.memory_free_gb)} GiB free, "
                 f"{na(gpu.memory_total_gb)} GiB total")
    lines.append(f"  load     utilisation {na(gpu.utilization_pct, '{:.0f}', ' %')}, "
                 f"temperature {na(gpu.temperature_c, '{:.0f}', ' °C')}, "
                 f"power {na(gpu.power_w, '{:.0f}')} / {na(gpu.power_limit_w, '{:.0f}')} W")
    if not gpu.processes:
        lines.append("  processes: none")
    else:
        lines.append("  processes:")
        for proc in gpu.processes:
            lines.append(f"    pid {proc.pid:<8} {proc.name:<24} {na(proc.used_gb, '{:.2f}', ' GiB')}")
    return lines


def host_lines(host: HostInfo) -> list[str]:
    cores = f"{host.cpu_count} cores" if host.cpu_count else "n/a cores"
    return [
        "Host",
        f"  CPU      {host.cpu_name or 'n/a'} ({cores}), {na(host.cpu_percent, '{:.0f}', ' %')} busy",
        f"  RAM      {na(host.ram_used_gb)} GiB used of {na(host.ram_total_gb)} GiB",
        f"  disk     {na(host.disk_free_gb)} GiB free of {na(host.disk_total_gb)} GiB"
        + (f" ({host.disk_path})" if host.disk_path else ""),
    ]


def render(snapshot: HardwareSnapshot) -> str:
    lines: list[str] = []
    if snapshot.gpus:
        lines.append(f"NVIDIA driver {snapshot.driver_version or 'n/a'}, CUDA {snapshot.cuda_version or 'n/a'}")
        lines.append("")
        for gpu in snapshot.gpus:
            lines += gpu_lines(gpu) + [""]
    else:
        reason = snapshot.nvml_error or "NVML reports no GPU visible to this process"
        host = snapshot.host
        lines.append(f"No GPU: {reason}.")
        lines.append(f"Training will run on the CPU ({host.cpu_count or 'n/a'} cores, "
                     f"{na(host.ram_total_gb)} GiB RAM): LoRA in float32, no 4-bit QLoRA and no Triton kernels. "
                     "That suits small models such as the embedded default (smollm2-135m-instruct); "
                     "expect minutes for a short run, and hours for billions of parameters.")
        lines.append("")
    lines += host_lines(snapshot.host)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(render(default_source(args.runs_dir, cpu_interval=0.2).snapshot()))
    return 0
