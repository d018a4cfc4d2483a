"""Put this folder on PYTHONPATH (with SYNCPROBE_LOG set) to find what makes a training step wait for the GPU.

Session 25's profile of the llama-1b step (H100) showed about 20% of it idle in both the bench and the
trainer, in gaps of 4 to 10 ms after a nonzero near the step's start and in mid-step. Each process that
runs backward passes turns on torch's sync debug mode (every synchronizing CUDA call warns) from its
SYNCPROBE_AFTER-th backward (default 5, past warm-up and graph captures) for SYNCPROBE_STEPS steps
(default 2), then appends each distinct Python stack that synchronized, with its count, to
$SYNCPROBE_LOG. The report is written when the window closes, so processes that leave with os._exit
still write it."""
import os

if os.environ.get("SYNCPROBE_LOG"):
    import collections
    import sys
    import traceback
    import warnings

    import torch

    _after = int(os.environ.get("SYNCPROBE_AFTER", "5"))
    _steps = int(os.environ.get("SYNCPROBE_STEPS", "2"))
    _calls = [0]
    _stacks: collections.Counter = collections.Counter()
    _backward = torch.Tensor.backward
    _show = warnings.showwarning
    warnings.filterwarnings("always", message=".*synchroniz.*")

    def _shown(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            frames = [f for f in traceback.extract_stack()[:-1] if "warnings.py" not in f.filename][-10:]
            _stacks["".join(f"    {f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}\n"
                            for f in frames)] += 1
            return
        _show(message, category, filename, lineno, file, line)

    def _report():
        with open(os.environ["SYNCPROBE_LOG"], "a") as out:
            out.write(f"== pid {os.getpid()} {' '.join(sys.argv[:4])}: {sum(_stacks.values())} synchronizing "
                      f"calls in {_steps} steps from backward {_after}\n")
            for stack, count in _stacks.most_common(25):
                out.write(f"  {count}x\n{stack}")

    def _probed_backward(self, *args, **kwargs):
        _calls[0] += 1
        if _calls[0] == _after and torch.cuda.is_available():
            warnings.showwarning = _shown
            torch.cuda.set_sync_debug_mode("warn")
        elif _calls[0] == _after + _steps and torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("default")
            warnings.showwarning = _show
            _report()
        return _backward(self, *args, **kwargs)

    torch.Tensor.backward = _probed_backward
