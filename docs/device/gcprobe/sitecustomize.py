"""Put this folder on PYTHONPATH to log, per process, every garbage collection over 5 ms and every full one
(generation, milliseconds, objects tracked at exit) to $TUITUNE_GC_LOG (session 22: are the bench's
slow steps full collections?)."""
import atexit
import gc
import os
import sys
import time

_started = [0.0]
_seen = []


def _timed(phase, info):
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    took = time.perf_counter() - _started[0]
    if info["generation"] == 2 or took > 0.005:
        _seen.append(f"gen{info['generation']} {took * 1000:.0f} ms")


def _report():
    path = os.environ.get("TUITUNE_GC_LOG")
    line = (f"{' '.join(sys.argv[:3])}: {len(_seen)} collections: {', '.join(_seen)}; "
            f"tracked {len(gc.get_objects())}, frozen {gc.get_freeze_count()}\n")
    with open(path, "a") if path else sys.stderr as out:
        out.write(line)


gc.callbacks.append(_timed)
atexit.register(_report)
