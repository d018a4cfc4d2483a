"""Where the host's time goes in a launch-bound step (device diagnostic; run from a tree on PYTHONPATH).

    python3 -P docs/device/host_1b.py [shape] [steps]

Loads the bench's tuitune path (QLoRA r16, offloaded checkpointing), warms up, then times steps two
ways: the host's enqueue time (train_step returning) and the step (after a synchronize). A step whose
enqueue time is close to its step time is host-bound. Then a cProfile of 3 steps: the 60 functions with
the most own time, and the 40 of tuitune's own code.
"""

import cProfile
import pstats
import statistics
import sys
import time

import torch

import tuitune.bench.measure as measure
from tuitune.bench.shapes import get_shape

shape = sys.argv[1] if len(sys.argv) > 1 else "llama-1b"
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 12
job = measure.Job(checkpoint="", vocab=get_shape(shape).vocab, path="tuitune", shape=shape, points=[], device="cuda",
                  checkpointing="offloaded")
from tuitune.bench.shapes import build_checkpoint  # noqa: E402

job.checkpoint = str(build_checkpoint(get_shape(shape)))
device = torch.device("cuda")
model, report = measure.load_model(job, device)
optimizer, _ = measure._optimizer(model, device, "tuitune")
print(report)
ids = torch.randint(0, job.vocab, (2, 2048), device=device)
for _ in range(3):
    measure.train_step(model, optimizer, ids)
torch.cuda.synchronize()
host, full = [], []
for _ in range(steps):
    start = time.perf_counter()
    measure.train_step(model, optimizer, ids)
    host.append(time.perf_counter() - start)
    torch.cuda.synchronize()
    full.append(time.perf_counter() - start)
print(f"{shape}: enqueue {statistics.median(host) * 1e3:.1f} ms median, step {statistics.median(full) * 1e3:.1f} ms "
      f"median; per step (enqueue/step ms): "
      + " ".join(f"{h * 1e3:.0f}/{f * 1e3:.0f}" for h, f in zip(host, full)))
prof = cProfile.Profile()
prof.enable()
for _ in range(3):
    measure.train_step(model, optimizer, ids)
torch.cuda.synchronize()
prof.disable()
rows = []
for (filename, line, function), (_, calls, own, cumulative, _) in pstats.Stats(prof).stats.items():
    label = function if filename == "~" else f"{'/'.join(filename.split('/')[-2:])}:{line}({function})"
    rows.append((own * 1e3 / 3, calls / 3, cumulative * 1e3 / 3, label, filename))
rows.sort(reverse=True)
print(f"cProfile own total {sum(r[0] for r in rows):.1f} ms per step")
for r in rows[:60]:
    print(f"{r[0]:8.2f} ms own {r[1]:7.0f} calls {r[2]:8.2f} ms cum  {r[3]}")
print("tuitune's own code:")
ours = [r for r in rows if "/tuitune/" in r[4]]
print(f"  own total {sum(r[0] for r in ours):.1f} ms per step")
for r in ours[:40]:
    print(f"{r[0]:8.2f} ms own {r[1]:7.0f} calls {r[2]:8.2f} ms cum  {r[3]}")
