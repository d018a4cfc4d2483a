"""tuitune's 8-bit AdamW makes exactly bitsandbytes' updates, without a device wait per tensor."""

import warnings

import pytest
import torch

from tuitune.trainer.optimizer import adamw_8bit


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
