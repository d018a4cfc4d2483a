"""Why does the kept-activation graphs' capture fail on the GPU? (session 11)

Trains the GPU test's tiny llama (3 layers) with kept graphs under each capture_error_mode and, while
capturing, checks after every aten op whether the capture stream is still capturing (cudaStreamIsCapturing
through ctypes), so the first op after which the capture was invalidated is named with its Python stack.
"""
import ctypes
import sys
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, ".")
from tests.kernels.tiny_models import adamw_losses, build_base, with_lora  # noqa: E402
from tuitune.trainer import layer_graphs as lg  # noqa: E402
from tuitune.trainer.activation_checkpointing import enable_checkpointing, layer_graphs  # noqa: E402
from tuitune.trainer.patching import apply_kernels  # noqa: E402

torch.zeros(1, device="cuda")
path = next(line.split()[-1] for line in open("/proc/self/maps") if "libcudart" in line)
cudart = ctypes.CDLL(path)
print("cudart", path)


def capture_status(stream) -> int:
    status = ctypes.c_int(-1)
    rc = cudart.cudaStreamIsCapturing(ctypes.c_void_p(stream.cuda_stream), ctypes.byref(status))
    return status.value if rc == 0 else 100 + rc


class Watch(TorchDispatchMode):
    def __init__(self, stream):
        super().__init__()
        self.stream, self.prev, self.first = stream, None, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.first is None:
            s = capture_status(self.stream)
            if s != 1:
                self.first = (str(func), self.prev, s, "".join(traceback.format_stack(limit=14)[:-1]))
        self.prev = str(func)
        return out


MODE = "thread_local"
REPORTS = []


def capture(self, body, warm, reload):
    phase = sys._getframe(1).f_code.co_name
    with self._lock:
        graph = torch.cuda.CUDAGraph()
        main = torch.cuda.current_stream(self.device)
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        watch = Watch(self._stream)
        try:
            self._fresh_casts()
            self._stream.wait_stream(main)
            with torch.cuda.stream(self._stream):
                warm()
            main.wait_stream(self._stream)
            reload()
            with torch.cuda.graph(graph, pool=self.pool, stream=self._stream, capture_error_mode=MODE):
                with watch:
                    body()
            main.wait_stream(self._stream)
        except Exception as exc:  # noqa: BLE001
            self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            REPORTS.append((phase, self.failed, watch.first, traceback.format_exc(limit=-8)))
            torch.cuda.synchronize(self.device)
            return None
        if watch.first is not None:
            REPORTS.append((phase, "captured, but status changed", watch.first, ""))
        self.captured += 1
        return graph


lg.ModelGraphs._capture = capture


def train(graphs: bool, nf4_dir=None):
    base = build_base("llama", dtype=torch.bfloat16, nf4_dir=nf4_dir, num_hidden_layers=3, hidden_size=512,
                      intermediate_size=1536, num_attention_heads=8, num_key_value_heads=4, vocab_size=2048,
                      max_position_embeddings=1024)
    model = with_lora(base, "llama").to("cuda").train()
    apply_kernels(model)
    enable_checkpointing(model, "none", cuda_graphs=graphs)
    losses = [float(x) for x in adamw_losses(model, (256,) * 6, rows=2, vocab=2048, lr=1e-3)]
    return losses, layer_graphs(model)


eager, _ = train(False)
print("eager", [round(x, 4) for x in eager])
for MODE in ("thread_local", "global", "relaxed"):
    REPORTS.clear()
    try:
        losses, graphs = train(True)
    except Exception:  # noqa: BLE001
        print(MODE, "training raised:\n", traceback.format_exc(limit=-10))
        continue
    print(f"== {MODE}: captured {graphs.captured} failed {graphs.failed}")
    print("   losses", [round(x, 4) for x in losses], "max diff", max(abs(a - b) for a, b in zip(losses, eager)))
    for phase, failed, first, tb in REPORTS[:2]:
        print("  phase", phase, "|", failed)
        if first:
            print("  first op with status != active:", first[0], "after", first[1], "status", first[2])
            print(first[3])
        print(tb)
