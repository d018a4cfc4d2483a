"""The distributed config fields, the torchrun command, engine configs and which checkpoints resume where."""

from __future__ import annotations

import json

import pytest

from tuitune import distributed_plan as dp
from tuitune.config import Config, ConfigError, apply_overrides
from tuitune.distributed_fields import check_endpoint, gpus_text, parse_gpus
from tuitune.errors import TuituneError


def config(**training) -> Config:
    return apply_overrides(Config(), {f"training.{k}": v for k, v in training.items()})


def test_gpus_is_a_count_or_device_ids():
    assert parse_gpus(2) == (2, None) and parse_gpus("4") == (4, None)
    assert parse_gpus([0, 1]) == (2, (0, 1)) and parse_gpus("1,3") == (2, (1, 3)) and parse_gpus("3,") == (1, (3,))
    assert gpus_text([2]) == "2," and gpus_text("0, 1") == "0,1" and gpus_text(8) == "8"
    for bad in ("two", 0, "0,0", [-1], True, "1,x"):
        with pytest.raises(ValueError):
            parse_gpus(bad)


def test_endpoint_check():
    assert check_endpoint("node0:1234") == ("node0:1234", None)
    assert check_endpoint("node0") == ("node0:29500", None)
    assert check_endpoint("[::1]:80") == ("[::1]:80", None)
    assert check_endpoint("node0:99999")[1] and check_endpoint("a b:1")[1]


def test_config_names_every_inconsistent_field():
    with pytest.raises(ConfigError) as caught:
        config(gpus="2", nnodes=2, node_rank=3)
    text = str(caught.value)
    assert "training.nnodes = 2 needs training.distributed" in text
    assert "node_rank (3) must be below training.nnodes (2)" in text
    assert "needs training.rdzv_endpoint" in text
    with pytest.raises(ConfigError, match="fsdp needs CUDA GPUs"):
        config(distributed="fsdp", device="cpu")
    assert config(distributed="zero3", device="cpu", gpus="2").training.distributed == "zero3"  # DeepSpeed's CPU accelerator
    good = config(distributed="ddp", gpus=[0, 1], nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29400")
    assert good.training.gpus == "0,1"


def test_torchrun_arguments_for_one_machine_and_for_several():
    one = dp.layout_of(config(distributed="ddp", gpus="2"))
    args = dp.torchrun_args(one, "/runs/r", None, run_id="r")
    assert args[:2] == ["--nproc-per-node", "2"] and "--standalone" in args
    assert args[-3:] == ["-m", dp.RANK_MODULE, "/runs/r"]
    two = dp.layout_of(config(distributed="fsdp", gpus="0,1", nnodes=2, node_rank=1, rdzv_endpoint="head:29400"))
    args = dp.torchrun_args(two, "/runs/r", "/runs/r/checkpoints/step-5", run_id="r")
    joined = " ".join(args)
    assert "--nnodes 2 " in joined and "--node-rank 1 --master-addr head --master-port 29400" in joined
    assert "--standalone" not in args and args[-2:] == ["--resume", "/runs/r/checkpoints/step-5"]
    assert two.world_size == 4 and "4 ranks" in two.describe()
    assert dp.command_text(args).startswith("torchrun --nproc-per-node 2")
    assert dp.rank_env(two)["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert dp.rank_env(two, visible="4,5,6")["CUDA_VISIBLE_DEVICES"] == "4,5"  # ordinals within the visible ones
    zero = dp.layout_of(config(distributed="zero3", gpus="2"))
    assert dp.rank_env(zero, cpu=True)["DS_ACCELERATOR"] == "cpu"  # else DeepSpeed takes any GPU it finds
    assert "DS_ACCELERATOR" not in dp.rank_env(zero) and "DS_ACCELERATOR" not in dp.rank_env(one, cpu=True)


def test_what_each_mode_changes():
    assert dp.optimizer_for("ddp", "adamw_8bit") == ("adamw_8bit", None)
    optimizer, note = dp.optimizer_for("zero3", "adamw_8bit")
    assert optimizer == "adamw_torch" and "8-bit" in note
    assert dp.needs_quant_storage("fsdp") and dp.needs_quant_storage("zero3") and not dp.needs_quant_storage("ddp")


def test_engine_configs():
    zero2, zero3 = dp.deepspeed_config("zero2"), dp.deepspeed_config("zero3")
    assert zero2["zero_optimization"]["stage"] == 2 and zero3["zero_optimization"]["stage"] == 3
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    for cfg in (zero2, zero3):  # the Trainer fills these from the run, so they can never disagree
        assert cfg["train_micro_batch_size_per_gpu"] == cfg["gradient_accumulation_steps"] == "auto"
        json.dumps(cfg)
    with pytest.raises(ValueError):
        dp.deepspeed_config("ddp")
    fsdp = dp.fsdp_config(["LlamaDecoderLayer"])
    assert fsdp["version"] == 2 and fsdp["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert fsdp["state_dict_type"] == "FULL_STATE_DICT"


def test_deepspeed_accepts_the_configs_when_installed():
    pytest.importorskip("deepspeed")
    from transformers import TrainingArguments

    for mode in dp.DEEPSPEED:
        args = TrainingArguments(output_dir="/tmp/tuitune-ds", deepspeed=dp.deepspeed_config(mode), use_cpu=True,
                                 per_device_train_batch_size=2, gradient_accumulation_steps=4, max_grad_norm=0.3)
        filled = args.hf_deepspeed_config.config
        assert filled["train_micro_batch_size_per_gpu"] == 2 and filled["gradient_clipping"] == 0.3


@pytest.mark.parametrize("written, target, ok", [
    ({"mode": "none", "world_size": 1}, ("ddp", "2"), True),
    ({"mode": "ddp", "world_size": 2}, ("none", "1"), True),
    ({"mode": "ddp", "world_size": 2}, ("ddp", "4"), True),
    ({"mode": "fsdp", "world_size": 2}, ("fsdp", "4"), True),
    ({"mode": "fsdp", "world_size": 2}, ("none", "1"), False),
    ({"mode": "ddp", "world_size": 2}, ("zero2", "2"), False),
    ({"mode": "zero3", "world_size": 2}, ("zero3", "2"), True),
    ({"mode": "zero3", "world_size": 2}, ("zero3", "4"), False),
    ({"mode": "zero2", "world_size": 2}, ("ddp", "2"), False),
])
def test_which_checkpoints_resume_under_which_mode(written, target, ok):
    mode, gpus = target
    layout = dp.layout_of(config(distributed=mode, gpus=gpus))
    problem = dp.resume_problem(written, layout)
    assert (problem is None) == ok, problem


def test_refusal_names_the_checkpoint_and_the_way_out(tmp_path):
    checkpoint = tmp_path / "step-4"
    checkpoint.mkdir()
    (checkpoint / dp.CHECKPOINT_META).write_text(json.dumps({"mode": "zero3", "world_size": 2, "nnodes": 1}))
    with pytest.raises(TuituneError) as caught:
        dp.check_resume(checkpoint, config(distributed="ddp", gpus="4"))
    assert str(checkpoint) in caught.value.message and "--gpus 2 --set training.distributed=zero3" in caught.value.message
    assert dp.read_checkpoint_meta(tmp_path) == {"mode": "none", "world_size": 1, "nnodes": 1}  # no file: one process
