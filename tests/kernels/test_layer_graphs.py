"""CUDA graphs of checkpointed layers train exactly as the eager layers do, and refuse what they cannot replay."""

import pytest
import torch

from tests.kernels.kernel_env import ON_GPU
from tests.kernels.replayed_graph import ReplayedBody, check_trains_like_eager, gpu_lora_llama
from tests.kernels.tiny_models import (adamw_losses, build_base, train_under_forward_autocast,
                                     train_with_a_parameter_outside_the_layer, with_lora)
from tuitune.trainer.activation_checkpointing import enable_checkpointing, layer_graphs
from tuitune.trainer.layer_graphs import _first_error, call_signature, graphable_layer

STEPS = 6
LAYERS = 3


def _train(mode: str, graphs: bool, nf4_dir=None, set_to_none: bool = True, lengths=(256,) * STEPS,
           graph_tokens: int | None = None, keep: list | None = None):
    """Per-step losses and the final adapters of a few AdamW steps; batches of one shape, so the
    second step captures and the rest replay. The optimizer steps between replays, so a stale
    adapter cast or a gradient added into a dropped buffer shows as diverging losses."""
    model = gpu_lora_llama(LAYERS, nf4_dir)
    assert enable_checkpointing(model, mode, cuda_graphs=graphs, graph_tokens=graph_tokens) == mode
    if keep is not None:
        keep.append(model)
    losses = [float(loss) for loss in adamw_losses(model, lengths, rows=2, vocab=2048, lr=1e-3,
                                                    set_to_none=set_to_none)]
    adapters = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
    return losses, adapters, layer_graphs(model)


@pytest.mark.skipif(not ON_GPU, reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("mode", ["standard", "offloaded"])
@pytest.mark.parametrize("set_to_none", [True, False], ids=["grads-dropped", "grads-zeroed"])
def test_graphed_layers_train_like_eager_ones(mode, set_to_none):
    eager, eager_adapters, none = _train(mode, graphs=False, set_to_none=set_to_none)
    assert none is None
    graphed, graphed_adapters, graphs = _train(mode, graphs=True, set_to_none=set_to_none)
    assert graphs.failed is None, graphs.failed
    assert graphs.captured == 2 * LAYERS, graphs.describe()  # one forward and one backward graph per layer
    check_trains_like_eager(graphed, eager, graphed_adapters, eager_adapters)


@pytest.mark.skipif(not ON_GPU, reason="CUDA graphs need a CUDA device")
def test_graphed_batches_of_two_lengths_train_like_eager_ones():
    """Padded batches of bucket lengths: each length has its graphs, views of one shared pair of buffers."""
    lengths = (128, 256, 128, 256, 128, 256, 128, 192)
    eager, eager_adapters, _ = _train("offloaded", graphs=False, lengths=lengths)
    graphed, graphed_adapters, graphs = _train("offloaded", graphs=True, lengths=lengths, graph_tokens=2 * 256)
    assert graphs.failed is None, graphs.failed
    assert graphs.captured == 2 * 2 * LAYERS, graphs.describe()  # 128 and 256; 192 is seen once (warm-up)
    assert len(graphs._flat) == 1
    check_trains_like_eager(graphed, eager, graphed_adapters, eager_adapters)


@pytest.mark.skipif(not ON_GPU, reason="CUDA graphs need a CUDA device")
def test_graphed_nf4_layers_train_like_eager_ones(tmp_path):
    pytest.importorskip("bitsandbytes")
    eager, _, _ = _train("offloaded", graphs=False, nf4_dir=tmp_path / "a")
    graphed, _, graphs = _train("offloaded", graphs=True, nf4_dir=tmp_path / "b")
    assert graphs.failed is None and graphs.captured == 2 * LAYERS, graphs.describe()
    check_trains_like_eager(graphed, eager)


def test_graphs_are_not_asked_for_without_cuda():
    model = with_lora(build_base("llama", num_hidden_layers=2), "llama").train()
    assert enable_checkpointing(model, "standard", cuda_graphs=True) == "standard"
    assert layer_graphs(model) is None


def test_a_layer_with_dropout_is_not_graphed():
    model = build_base("llama", num_hidden_layers=1, attention_dropout=0.1)
    assert "attention dropout" in graphable_layer(model.model.layers[0])
    assert graphable_layer(build_base("llama", num_hidden_layers=1).model.layers[0]) is None


def test_packed_rows_and_unknown_arguments_are_not_graphed():
    hidden = torch.zeros(1, 8, 16)
    cos = torch.zeros(1, 8, 4)
    plain = call_signature(hidden, (), {"position_embeddings": (cos, cos), "use_cache": False})
    assert plain is not None
    assert plain == call_signature(torch.ones(1, 8, 16), (), {"position_embeddings": (cos, cos), "use_cache": False})
    assert plain != call_signature(torch.zeros(1, 9, 16), (), {"position_embeddings": (cos, cos), "use_cache": False})
    assert call_signature(hidden, (), {"cu_seq_lens_q": torch.tensor([0, 8])}) is None
    assert call_signature(hidden, (), {"cache": object()}) is None
    assert call_signature(hidden, (), {"mask": torch.zeros(8, requires_grad=True)}) is None


def _cpu_graphs(monkeypatch):
    from tuitune.trainer import activation_checkpointing, layer_graphs as lg

    class CPUGraphs(lg.ModelGraphs):
        def _capture(self, body, warm, reload):
            warm()
            reload()
            self.captured += 1
            return ReplayedBody(body)

    monkeypatch.setattr(activation_checkpointing, "_graphs_possible", lambda device: True)
    monkeypatch.setattr(lg, "ModelGraphs", CPUGraphs)


def _cpu_train(graphs: bool, lengths, set_to_none: bool = True, graph_tokens: int | None = None):
    """Per-step losses of AdamW steps on batches of two rows of ``lengths`` tokens, and the graphs."""
    model = with_lora(build_base("llama", num_hidden_layers=LAYERS), "llama").train()
    enable_checkpointing(model, "standard", cuda_graphs=graphs, graph_tokens=graph_tokens)
    losses = adamw_losses(model, lengths, rows=2, vocab=320, lr=1e-2, set_to_none=set_to_none)
    return torch.stack(losses), layer_graphs(model)


@pytest.mark.parametrize("set_to_none", [True, False], ids=["grads-dropped", "grads-zeroed"])
def test_replays_train_like_eager_layers_on_the_cpu(monkeypatch, set_to_none):
    eager, _ = _cpu_train(False, (12,) * 5, set_to_none)
    _cpu_graphs(monkeypatch)
    replayed, graphs = _cpu_train(True, (12,) * 5, set_to_none)
    assert graphs.failed is None and graphs.captured == 2 * LAYERS, graphs.describe()
    replays = [g.replays for entry in graphs.layers.values() for g in (*entry.forward.values(), *entry.backward.values())]
    assert replays == [4] * (2 * LAYERS)  # steps 2 to 5: step 1 was the warm-up
    torch.testing.assert_close(replayed, eager, rtol=1e-5, atol=1e-6)


def test_a_forward_under_autocast_has_its_backward_graphed_too(monkeypatch):
    """A trainer's autocast (bf16 = true) covers the forward only: the backward, run outside it, must
    still find the forward's graphs (it once looked them up under its own, disabled, autocast)."""
    _cpu_graphs(monkeypatch)
    graphs = layer_graphs(train_under_forward_autocast("standard", LAYERS))
    assert graphs.captured == 2 * LAYERS, graphs.describe()
    assert f"{LAYERS} recompute + backward" in graphs.describe()
    replays = [g.replays for entry in graphs.layers.values() for g in entry.backward.values()]
    assert replays == [2] * LAYERS  # captured and replayed at step 2, replayed at step 3


def test_a_layer_whose_backward_reaches_outside_it_runs_eagerly(monkeypatch):
    _cpu_graphs(monkeypatch)
    model, outside = train_with_a_parameter_outside_the_layer("standard")
    graphs = layer_graphs(model)
    assert "outside the layer" in graphs.describe()
    assert outside.grad is not None and float(outside.grad) != 0.0


def test_the_run_log_says_what_became_of_the_graphs(monkeypatch):
    from tuitune.trainer.callback import EventsCallback

    class Sink:
        def __init__(self):
            self.logs, self.warnings = [], []

        def log(self, text, level="info"):
            self.logs.append(text)

        def warning(self, text):
            self.warnings.append(text)

    _cpu_graphs(monkeypatch)
    model = with_lora(build_base("llama", num_hidden_layers=1), "llama").train()
    enable_checkpointing(model, "standard", cuda_graphs=True)
    ids = torch.randint(0, 320, (2, 12))
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
    callback = EventsCallback.__new__(EventsCallback)
    callback.sink = Sink()
    callback._report_graphs(model)
    assert callback.sink.logs == ["CUDA graphs of the layers: 2 captured (1 forward, 1 recompute + backward)."]
    layer_graphs(model).failed = "RuntimeError: operation not permitted when stream is capturing"
    callback._report_graphs(model)
    assert "stopped" in callback.sink.warnings[0] and "training.cuda_graphs = off" in callback.sink.warnings[0]


def test_batches_of_a_few_lengths_each_replay_their_own_graphs_from_shared_buffers(monkeypatch):
    """Padded to a few bucket lengths, each length gets its graphs; all share one pair of buffers."""
    lengths = (8, 16, 8, 16, 8, 16, 12)
    eager, _ = _cpu_train(False, lengths, graph_tokens=2 * 16)
    _cpu_graphs(monkeypatch)
    replayed, graphs = _cpu_train(True, lengths, graph_tokens=2 * 16)
    assert graphs.failed is None and graphs.captured == 2 * 2 * LAYERS, graphs.describe()  # lengths 8 and 16
    assert len(graphs._flat) == 1  # sized for 2 x 16 tokens up front: every signature's views fit
    torch.testing.assert_close(replayed, eager, rtol=1e-5, atol=1e-6)


def test_a_larger_batch_than_announced_gets_buffers_of_its_own(monkeypatch):
    from tuitune.trainer import layer_graphs as lg

    graphs = lg.ModelGraphs(torch.device("cpu"), capacity_tokens=4)
    small, large = torch.zeros(1, 4, 8), torch.zeros(2, 8, 8)
    a = graphs._shared_views(small)
    b = graphs._shared_views(torch.zeros(1, 2, 8))
    assert a[0].data_ptr() == b[0].data_ptr() and a[1].data_ptr() == b[1].data_ptr()
    c = graphs._shared_views(large)
    assert c[0].shape == large.shape and c[0].data_ptr() != a[0].data_ptr() and len(graphs._flat) == 2


def test_the_sft_trainer_pads_to_bucket_lengths_only_when_it_graphs():
    from tuitune.config import Config, apply_overrides
    from tuitune.plan import Plan
    from tuitune.trainer.arguments import graph_buckets

    graphed = Plan("cuda", "GPU", "qlora", "bfloat16", "adamw_8bit", "standard", cuda_graphs=True)
    eager = Plan("cuda", "GPU", "qlora", "bfloat16", "adamw_8bit", "standard")
    assert graph_buckets(Config(), graphed) == {"pad_to_multiple_of": 256}
    assert graph_buckets(apply_overrides(Config(), {"model.max_seq_length": 128}), graphed) == {"pad_to_multiple_of": 128}
    assert graph_buckets(Config(), eager) == {}
    assert graph_buckets(apply_overrides(Config(), {"data.packing": True}), graphed) == {}


def test_a_model_without_a_cuda_device_has_no_graph_pool():
    from tuitune.trainer import layer_graphs as lg

    assert lg.ModelGraphs(torch.device("cpu")).pool_gb() == 0.0


@pytest.mark.skipif(not ON_GPU, reason="CUDA graphs need a CUDA device")
def test_the_graph_pool_is_measured_and_counted_in_the_runs_peak():
    from tuitune.trainer.run_loop import _peak_gpu_memory_gb, peak_parts_of_a_lent_pool

    kept: list = []
    _train("offloaded", graphs=True, keep=kept)
    graphs = layer_graphs(kept[0])
    pool = graphs.pool_gb()
    assert pool > 0
    peak = _peak_gpu_memory_gb(kept[0], peak_parts_of_a_lent_pool(kept[0]))
    assert peak == pytest.approx(torch.cuda.max_memory_allocated() / 1024**3 + pool)


def test_a_capture_broken_by_an_earlier_call_names_that_call():
    cause = "CUDA error: operation would make the legacy stream depend on a capturing blocking stream"
    try:
        try:
            raise RuntimeError(cause + "\nSearch for `cudaErrorStreamCaptureImplicit'")
        except RuntimeError:
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")  # noqa: B904
    except RuntimeError as exc:
        assert _first_error(exc) == f"RuntimeError: {cause}"
    assert _first_error(ValueError("plain\nmore")) == "ValueError: plain"


@pytest.mark.skipif(not ON_GPU, reason="CUDA graphs need a CUDA device")
def test_a_loss_that_borrows_the_graph_pool_trains_like_eager_and_leaves_the_pool_its_size():
    """The offloaded LM head's copy and the logits chunk live in the graphs' pool between the last
    forward replay and the first backward replay (loss_in_graph_pool): same losses and adapters as
    eager layers, and the pool stays the one segment reserved for them."""
    from tuitune.trainer.embedding_offload import offload_input_embeddings
    from tuitune.trainer.head_offload import head_stash, offload_output_head
    from tuitune.trainer.loss_in_graph_pool import lend_graph_pool_to_loss
    from tuitune.trainer.outside_pool_peak import OutsidePoolPeak
    from tuitune.trainer.patching import LOSS_ALLOCATOR

    closed: list[int] = []  # what the trainer's peak outside the pool took off each stretch it closed

    class Recorded(OutsidePoolPeak):
        def _close(self, lent):
            closed.append(lent)
            super()._close(lent)

    def train(graphs: bool):
        model = gpu_lora_llama(LAYERS)
        assert enable_checkpointing(model, "offloaded", cuda_graphs=graphs) == "offloaded"
        offload_input_embeddings(model)
        assert offload_output_head(model) == "offloaded"
        told = lend_graph_pool_to_loss(model)
        assert told.startswith("lent" if graphs else "not lent"), told
        if graphs:  # count what the loss takes from the pool: the head's copy and the logits chunk, each step
            base, stash = model.get_base_model(), head_stash(model.get_base_model().lm_head)
            lend = stash.allocate
            stash.allocate = base.__dict__[LOSS_ALLOCATOR] = lambda *a: lent.append(a) or lend(*a)
            layer_graphs(model).outside_peak = Recorded.on_device(torch.device("cuda"))
        losses = [float(loss) for loss in adamw_losses(model, (256,) * STEPS, rows=2, vocab=2048, lr=1e-3)]
        adapters = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
        return losses, adapters, layer_graphs(model), model

    lent: list = []
    eager, eager_adapters, _, _ = train(False)
    losses, lent_adapters, graphs, model = train(True)
    assert graphs.failed is None and graphs.captured == 2 * LAYERS and graphs.lends(), graphs.describe()
    assert head_stash(model.get_base_model().lm_head).starts_at_loss
    assert len(lent) == 2 * STEPS, lent
    # each step: nothing lent up to the loss, then the head's copy and the chunk until the first backward replay
    assert closed[0::2] == [0] * STEPS and len(set(closed[1::2])) == 1 and closed[1] >= 2048 * 512 * 2, closed
    assert len(closed) == 2 * STEPS and graphs.outside_peak.bytes() > 0
    check_trains_like_eager(losses, eager, lent_adapters, eager_adapters)
    reserved = 2048 * 512 * 2 + (1 << 26) * 2 + (4 << 20)  # the head, the largest logits chunk, slack
    large = [s["total_size"] for s in torch.cuda.memory_snapshot()
             if tuple(s.get("segment_pool_id", (0, 0))) == tuple(graphs.pool) and s.get("segment_type") == "large"]
    assert len(large) == 1 and large[0] >= reserved - (2 << 20), large  # the captures carved from the reserve


def test_the_loss_borrows_no_pool_where_the_layers_are_not_graphed():
    from tuitune.trainer.loss_in_graph_pool import lend_graph_pool_to_loss

    model = with_lora(build_base("llama"), "llama")
    assert lend_graph_pool_to_loss(model) == "not lent: the layers are not graphed with recomputation"
