"""CUDA graphs of layers that keep their activations (no recomputation) train exactly as eager layers do.

On the CPU a captured graph is stood in for by its body, run again at each replay (as in
test_layer_graphs.py): that checks everything around the capture (the per-layer buffers, the kept
gradients, the one graphed signature, the eager fallbacks). On a GPU the real graphs run."""

import pytest
import torch

from tests.kernels.kernel_env import ON_GPU
from tests.kernels.replayed_graph import ReplayedBody, check_trains_like_eager, gpu_lora_llama
from tests.kernels.tiny_models import (adamw_losses, build_base, train_under_forward_autocast,
                                     train_with_a_parameter_outside_the_layer, with_lora)
from tuitune.trainer.activation_checkpointing import enable_checkpointing, layer_graphs
from tuitune.trainer.patching import apply_kernels

LAYERS = 3


def _cpu_graphs(monkeypatch):
    from tuitune.trainer import activation_checkpointing, kept_layer_graphs as kg, layer_graphs as lg

    def capture(self, body, warm, reload):
        warm()
        reload()
        self.captured += 1
        return ReplayedBody(body)

    monkeypatch.setattr(activation_checkpointing, "_graphs_possible", lambda device: True)
    monkeypatch.setattr(lg.ModelGraphs, "_capture", capture)  # the kept graphs' and their others'
    assert kg.KeptGraphs._capture is capture


def _cpu_train(graphs: bool, lengths, set_to_none: bool = True, model=None):
    model = model or with_lora(build_base("llama", num_hidden_layers=LAYERS), "llama").train()
    assert enable_checkpointing(model, "none", cuda_graphs=graphs) == "none"
    losses = adamw_losses(model, lengths, rows=2, vocab=320, lr=1e-2, set_to_none=set_to_none)
    return torch.stack(losses), layer_graphs(model)


def _replays(graphs) -> list[tuple[int, int]]:
    """Each layer's (forward replays, backward replays). A forward replays once more than the steps
    it served: again right after its backward was captured, whose warm-up consumed what it saved."""
    return [(sum(g.replays for g in entry.forward.values()), sum(g.replays for g in entry.backward.values()))
            for entry in graphs.layers.values()]


@pytest.mark.parametrize("set_to_none", [True, False], ids=["grads-dropped", "grads-zeroed"])
def test_replays_train_like_eager_layers_on_the_cpu(monkeypatch, set_to_none):
    eager, none = _cpu_train(False, (12,) * 5, set_to_none)
    assert none is None
    _cpu_graphs(monkeypatch)
    replayed, graphs = _cpu_train(True, (12,) * 5, set_to_none)
    assert graphs.failed is None and graphs.captured == 2 * LAYERS, graphs.describe()
    assert _replays(graphs) == [(5, 4)] * LAYERS  # steps 2 to 5: step 1 was the warm-up
    assert graphs.describe() == f"{2 * LAYERS} captured ({LAYERS} forward, {LAYERS} backward, activations kept)"
    torch.testing.assert_close(replayed, eager, rtol=1e-5, atol=1e-6)


def test_replays_with_the_kernels_train_like_eager_layers_on_the_cpu(monkeypatch):
    """lora_mlp's backward overwrites the gate and up its forward saved; the backward capture's
    warm-up must not leave the first replayed backward reading its gradients as activations."""
    def train(graphs: bool):
        model = with_lora(build_base("llama", num_hidden_layers=2), "llama").train()
        apply_kernels(model, allow_cpu=True)
        losses, graph_set = _cpu_train(graphs, (12,) * 4, model=model)
        return losses, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}, graph_set

    eager, eager_adapters, _ = train(False)
    _cpu_graphs(monkeypatch)
    replayed, adapters, graphs = train(True)
    assert graphs.failed is None and graphs.captured == 4, graphs.describe()
    torch.testing.assert_close(replayed, eager, rtol=1e-5, atol=1e-6)
    for name, value in eager_adapters.items():
        torch.testing.assert_close(adapters[name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_each_layer_keeps_its_own_input_for_its_backward(monkeypatch):
    """Every layer's forward runs before any backward: a shared input buffer would leave each
    backward the last layer's input."""
    _cpu_graphs(monkeypatch)
    _, graphs = _cpu_train(True, (12,) * 3)
    inputs = [kept.x for kept in graphs.kept.values()]
    assert len(inputs) == LAYERS and len({t.data_ptr() for t in inputs}) == LAYERS
    assert all(t.requires_grad and t.is_leaf for t in inputs)


def test_one_signature_keeps_its_activations_and_the_others_replay_checkpointed(monkeypatch):
    """A second kept signature would hold a second copy of every layer's activations: other batch
    lengths run checkpointed, their recompute and backward replayed by the recompute graphs."""
    lengths = (8, 16, 8, 16, 8, 16, 16)
    eager, _ = _cpu_train(False, lengths)
    _cpu_graphs(monkeypatch)
    replayed, graphs = _cpu_train(True, lengths)
    assert graphs.captured == 2 * LAYERS and graphs.key[0][:2] == (2, 8), graphs.describe()
    assert _replays(graphs) == [(3, 2)] * LAYERS  # length 8 at steps 3 and 5 (1: the warm-up)
    # length 16: steps 2 (the warm-up, checkpointed eagerly), then captured at 4 and replayed at 4, 6, 7
    assert graphs.others.captured == 2 * LAYERS and _replays(graphs.others) == [(3, 3)] * LAYERS
    assert graphs.describe() == (f"{2 * LAYERS} captured ({LAYERS} forward, {LAYERS} backward, activations kept); "
                                 f"other batch shapes, checkpointed: {2 * LAYERS} captured ({LAYERS} forward, "
                                 f"{LAYERS} recompute + backward)")
    torch.testing.assert_close(replayed, eager, rtol=1e-5, atol=1e-6)


def test_a_forward_under_autocast_is_graphed_with_its_backward(monkeypatch):
    _cpu_graphs(monkeypatch)
    graphs = layer_graphs(train_under_forward_autocast("none", LAYERS))
    assert graphs.captured == 2 * LAYERS and _replays(graphs) == [(3, 2)] * LAYERS, graphs.describe()


def test_a_layer_whose_backward_reaches_outside_it_runs_eagerly(monkeypatch):
    _cpu_graphs(monkeypatch)
    model, outside = train_with_a_parameter_outside_the_layer("none")
    graphs = layer_graphs(model)
    assert "outside the layer" in graphs.describe() and graphs.captured == 0
    assert outside.grad is not None and float(outside.grad) != 0.0


def test_a_layer_that_returns_a_tuple_runs_eagerly(monkeypatch):
    """Older decoder layers return ``(hidden_states,)``: what the graphs cannot hold runs as written."""
    _cpu_graphs(monkeypatch)
    model = with_lora(build_base("llama", num_hidden_layers=1), "llama").train()
    layer = model.get_base_model().model.layers[0]
    plain = layer.forward
    layer.forward = lambda *args, **kwargs: (plain(*args, **kwargs),)
    enable_checkpointing(model, "none", cuda_graphs=True)
    graphs = layer_graphs(model)
    ids = torch.randint(0, 320, (2, 12))
    hidden = model.get_base_model().model.embed_tokens(ids)
    for _ in range(3):
        out = layer(hidden, position_embeddings=model.get_base_model().model.rotary_emb(hidden, torch.arange(12)[None]))
        assert isinstance(out, tuple)
    assert "not a tensor" in graphs.describe() and graphs.captured == 0


def test_a_failed_backward_capture_computes_that_backward_eagerly(monkeypatch):
    """The forward graph already ran: its autograd graph gives the step's gradients without a graph."""
    from tuitune.trainer import kept_layer_graphs as kg

    eager, _ = _cpu_train(False, (12,) * 4)
    _cpu_graphs(monkeypatch)
    forward_capture = kg.KeptGraphs._capture

    def capture(self, body, warm, reload):
        if self.captured >= LAYERS:  # every forward captured; the first backward capture fails
            self.failed = "RuntimeError: operation not permitted when stream is capturing"
            return None
        return forward_capture(self, body, warm, reload)

    monkeypatch.setattr(kg.KeptGraphs, "_capture", capture)
    replayed, graphs = _cpu_train(True, (12,) * 4)
    assert graphs.failed and "off after a capture failed" in graphs.describe()
    torch.testing.assert_close(replayed, eager, rtol=1e-5, atol=1e-6)


def test_replays_leave_the_versions_of_the_saved_tensors_alone(monkeypatch):
    """On a GPU the forward graph's autograd graph is recorded once, at capture, and every later
    backward runs over it: loading a replay's input must not look like an in-place change of the
    tensors it saved. Here a forward graph computes at capture and never again, as on a GPU, and a
    backward's capture runs autograd over it (replays run no Python, so they check nothing)."""
    from tuitune.trainer import activation_checkpointing, kept_layer_graphs as kg

    class Once:
        def replay(self):
            pass

    def capture(self, body, warm, reload):
        warm()  # a backward's warm-up runs over the forward's autograd graph, after the replay's load
        reload()
        self.captured += 1
        if self.captured <= LAYERS:  # the forward graphs: the autograd graph of their capture stays
            body()
        return Once()

    monkeypatch.setattr(activation_checkpointing, "_graphs_possible", lambda device: True)
    monkeypatch.setattr(kg.KeptGraphs, "_capture", capture)
    _, graphs = _cpu_train(True, (12,) * 3)  # an in-place load would fail the second step's backward
    assert graphs.failed is None and graphs.captured == 2 * LAYERS, graphs.describe()


def test_switching_back_to_checkpointing_unwraps_the_layers(monkeypatch):
    _cpu_graphs(monkeypatch)
    model = with_lora(build_base("llama", num_hidden_layers=1), "llama").train()
    enable_checkpointing(model, "none", cuda_graphs=True)
    layer = model.get_base_model().model.layers[0]
    assert "forward" in layer.__dict__
    enable_checkpointing(model, "none")
    assert "forward" not in layer.__dict__ and layer_graphs(model) is None


def _gpu_train(graphs: bool, nf4_dir=None, set_to_none: bool = True, steps: int = 6, lengths=None):
    model = gpu_lora_llama(LAYERS, nf4_dir)
    assert enable_checkpointing(model, "none", cuda_graphs=graphs) == "none"
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    losses = [float(loss) for loss in adamw_losses(model, lengths or (256,) * steps, rows=2, vocab=2048, lr=1e-3,
                                                    set_to_none=set_to_none)]
    adapters = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
    graph_set = layer_graphs(model)
    training_gb = (torch.cuda.max_memory_allocated() - before) / 1024**3 + (graph_set.pool_gb() if graph_set else 0.0)
    return losses, adapters, graph_set, training_gb


@pytest.mark.skipif(not ON_GPU, reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("set_to_none", [True, False], ids=["grads-dropped", "grads-zeroed"])
def test_graphed_layers_with_kept_activations_train_like_eager_ones(set_to_none):
    eager, eager_adapters, _, eager_gb = _gpu_train(False, set_to_none=set_to_none)
    graphed, graphed_adapters, graphs, graphed_gb = _gpu_train(True, set_to_none=set_to_none)
    assert graphs.failed is None and graphs.captured == 2 * LAYERS, graphs.describe()
    # the graphs hold what eager training without recomputation holds, plus each layer's input and
    # output and their pool's slack: a few segments of 2 and 20 MiB, most of this tiny model's total
    # (0.11 GiB against 0.03 on an H100; llama-1b: 5.78 GiB against 5.17)
    assert graphed_gb <= 1.5 * eager_gb + 0.12, (graphed_gb, eager_gb)
    check_trains_like_eager(graphed, eager, graphed_adapters, eager_adapters)


@pytest.mark.skipif(not ON_GPU, reason="CUDA graphs need a CUDA device")
def test_batches_of_two_lengths_train_like_eager_ones_on_both_kinds_of_graph():
    """256 keeps its activations; 512 runs checkpointed, its recompute graphed (captured at step 4)."""
    lengths = (256, 512, 256, 512, 256, 512, 512)
    eager, eager_adapters, _, _ = _gpu_train(False, lengths=lengths)
    graphed, graphed_adapters, graphs, _ = _gpu_train(True, lengths=lengths)
    assert graphs.failed is None and graphs.captured == 2 * LAYERS, graphs.describe()
    assert graphs.others.failed is None and graphs.others.captured == 2 * LAYERS, graphs.describe()
    check_trains_like_eager(graphed, eager, graphed_adapters, eager_adapters)


@pytest.mark.skipif(not ON_GPU, reason="CUDA graphs need a CUDA device")
def test_graphed_nf4_layers_with_kept_activations_train_like_eager_ones(tmp_path):
    pytest.importorskip("bitsandbytes")
    eager, _, _, _ = _gpu_train(False, nf4_dir=tmp_path / "a")
    graphed, _, graphs, _ = _gpu_train(True, nf4_dir=tmp_path / "b")
    assert graphs.failed is None and graphs.captured == 2 * LAYERS, graphs.describe()
    check_trains_like_eager(graphed, eager)


def test_the_bench_graphs_layers_without_recomputation(tmp_path, monkeypatch):
    """`tuitune bench --checkpointing none --cuda-graphs on` runs the kept-activation graphs."""
    from tuitune.bench import measure
    from tuitune.bench.shapes import get_shape

    _cpu_graphs(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    job = measure.Job(checkpoint="", vocab=get_shape("tiny").vocab, path="tuitune", method="lora", rank=4,
                      points=[[2, 16, 4, 1]], checkpointing="none", device="cpu", shape="tiny", cuda_graphs=True)
    result = measure.run(job)
    assert "error" not in result["points"][0]
    assert result["cuda_graphs"].endswith("backward, activations kept)"), result["cuda_graphs"]
    assert not result["cuda_graphs"].startswith("0 captured"), result["cuda_graphs"]
