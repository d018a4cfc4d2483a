"""A CPU stand-in for a captured CUDA graph, for the graph tests (test_layer_graphs.py,
test_kept_layer_graphs.py)."""


class ReplayedBody:
    """A stand-in for a captured CUDA graph on the CPU: replaying runs the captured body again. The
    body reads and writes only the static buffers, as a real graph's kernels do, so this checks
    everything around the capture: buffers, gradients bound to their kept tensors, adapter casts."""

    def __init__(self, body):
        self.body, self.replays = body, 0

    def replay(self):
        self.replays += 1
        self.body()
