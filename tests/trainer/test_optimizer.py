"""tuitune's 8-bit AdamW makes exactly bitsandbytes' updates, without a device wait per tensor."""

import warnings

import pytest
import torch

from tuitune.trainer.optimizer import adamw_8bit, blockwise_kernels


def _params(seed):
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(n, 64)) for n in (256, 64, 1024)]


def test_same_updates_as_bitsandbytes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes as bnb
    ours, theirs = _params(0), _params(0)
    opt_ours = adamw_8bit(ours, lr=1e-2, weight_decay=0.01)
    opt_theirs = bnb.optim.AdamW8bit(theirs, lr=1e-2, weight_decay=0.01)
    for step in range(3):
        torch.manual_seed(100 + step)
        grads = [torch.randn_like(p) for p in ours]
        for opt, params in ((opt_ours, ours), (opt_theirs, theirs)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for a, b, start in zip(ours, theirs, _params(0)):
        assert not torch.equal(a, start), "the optimizer did not move the parameter"
        assert torch.equal(a, b)


def test_a_parameter_without_gradient_is_left_alone():
    params = _params(1)
    before = params[1].detach().clone()
    opt = adamw_8bit(params, lr=1e-2)
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    assert torch.equal(params[1], before)
    with pytest.raises(TypeError):
        adamw_8bit(params, no_such_option=1)


def _trainer(tmp_path, optim: str):
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    args = TrainingArguments(output_dir=str(tmp_path), optim=optim, use_cpu=True, report_to="none")
    return Trainer(model=model, args=args)


def test_the_trainer_gets_the_same_optimizer_without_host_waits(tmp_path):
    from tuitune.trainer.optimizer import use_in_trainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes as bnb
        trainer = _trainer(tmp_path, "adamw_bnb_8bit")
        assert use_in_trainer(trainer) == "AdamWStreamed"
        optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, bnb.optim.AdamW) and type(optimizer).__name__ == "AdamWStreamed"
    assert optimizer.args.optim_bits == 8 and not optimizer.is_paged
    for kept in ("adamw_torch", "paged_adamw_8bit"):
        assert use_in_trainer(_trainer(tmp_path / kept, kept)) is None


def test_embeddings_keep_32_bit_states_as_with_bitsandbytes_own_class(tmp_path):
    """transformers gives embeddings (trained by continued pretraining) 32-bit states; the same must hold
    for the optimizer without host waits."""
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    from tuitune.trainer.optimizer import use_in_trainer

    model = LlamaForCausalLM(LlamaConfig(vocab_size=4096, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    args = TrainingArguments(output_dir=str(tmp_path), optim="adamw_bnb_8bit", use_cpu=True, report_to="none")
    trainer = Trainer(model=model, args=args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert use_in_trainer(trainer) == "AdamWStreamed"
        optimizer = trainer.create_optimizer()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    embeddings, head = model.get_input_embeddings().weight, model.lm_head.weight
    assert optimizer.state[embeddings]["state1"].dtype == torch.float32
    assert optimizer.state[head]["state1"].dtype == torch.uint8  # the rest stays 8-bit


def test_only_cuda_tensors_with_8_bit_states_and_no_override_are_updated_directly():
    params = _params(2)
    opt = adamw_8bit(params, lr=1e-2)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert all(v is None for v in opt._tuitune_direct.values())  # CPU tensors: bitsandbytes' own step
    state = opt.state[params[2]]
    assert state["state1"].dtype == torch.uint8 and blockwise_kernels(opt, state, params[2], 0, 2) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the direct kernel call is for CUDA tensors")
@pytest.mark.parametrize("grad_dtype", [torch.float32, torch.bfloat16])
def test_direct_updates_on_the_gpu_are_bitsandbytes_updates_exactly(grad_dtype):
    """Same kernel, same arguments: parameters and 8-bit states equal bit for bit over steps whose
    learning rate changes, beside a small tensor (32-bit states) and one with an override, which
    bitsandbytes' own update step serves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes as bnb

    def make():
        torch.manual_seed(3)
        shapes = ((16, 4096), (4096, 16), (8, 32), (64, 1024))
        return [torch.nn.Parameter(torch.randn(*s, device="cuda", dtype=grad_dtype)) for s in shapes]

    # bitsandbytes keeps overrides in one process-wide manager, by parameter position: set aside what
    # earlier tests left there (the trainer's 32-bit embeddings at position (0, 0))
    manager = bnb.optim.GlobalOptimManager.get_instance()
    left = dict(manager.index2config)
    manager.index2config.clear()
    ours, theirs = make(), make()
    optimizers = []
    for params, cls in ((ours, None), (theirs, bnb.optim.AdamW8bit)):
        opt = adamw_8bit(params, lr=1e-3, weight_decay=0.01) if cls is None else cls(params, lr=1e-3, weight_decay=0.01)
        manager.pid2config[id(params[3])] = {"betas": (0.8, 0.99)}
        optimizers.append(opt)
    for step in range(4):
        torch.manual_seed(10 + step)
        grads = [torch.randn_like(p) for p in ours]
        for opt, params in zip(optimizers, (ours, theirs)):
            for group in opt.param_groups:
                group["lr"] = 1e-3 * (step + 1)
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
            opt.zero_grad(set_to_none=True)
    direct = optimizers[0]._tuitune_direct
    assert [direct[id(p)] is not None for p in ours] == [True, True, False, False]
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    for a, b in zip(ours[:2], theirs[:2]):
        sa, sb = optimizers[0].state[a], optimizers[1].state[b]
        for key in ("state1", "state2", "absmax1", "absmax2"):
            assert torch.equal(sa[key], sb[key]), key
        assert sa["step"] == sb["step"] == 4
    for params in (ours, theirs):
        manager.pid2config.pop(id(params[3]), None)
    manager.index2config.update(left)


def test_kept_update_arguments_follow_the_parameter_its_states_and_the_group():
    """The direct update's ctypes arguments are built once per parameter; only the gradient's address,
    the step and the learning rate are rewritten per step, and anything else that moves rebuilds them."""
    from tuitune.trainer.optimizer import _UpdateArguments

    params = _params(4)
    opt = adamw_8bit(params, lr=1e-2)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    group, p = opt.param_groups[0], params[2]
    state = opt.state[p]
    kept = _UpdateArguments(opt, group, p, state)
    grad = torch.zeros_like(p)
    arguments = kept.for_step(grad, 7, 0.25)
    assert arguments[1].value == grad.data_ptr() and arguments[9].value == 7 and arguments[10].value == 0.25
    assert arguments[0].value == p.data_ptr() and arguments[-1].value == p.numel()
    group["lr"] = 0.5
    assert kept.fits(opt, group, p, state)  # the learning rate is written per step
    group["betas"] = (0.8, 0.95)
    assert not kept.fits(opt, group, p, state)
    kept = _UpdateArguments(opt, group, p, state)
    state["state1"] = state["state1"].clone()  # a loaded checkpoint's states
    assert not kept.fits(opt, group, p, state)
    kept = _UpdateArguments(opt, group, p, state)
    assert not kept.fits(opt, group, params[1], opt.state[params[1]])
