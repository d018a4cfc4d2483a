"""The Monitor's log tail keeps tuitune's warnings and real errors, drops library deprecation
notices, harmless library chatter and progress bars (they stay in train.log); the trainer keeps a
library's deprecation-only log records out of the run's events."""

from __future__ import annotations

import logging

from tuitune.log_filter import LogFilter, keep_library_record
from tuitune.run_feed import LogTail

SITE = "/home/me/tuitune/.venv/lib/python3.11/site-packages"  # a venv inside a folder named tuitune

TRAIN_LOG = [
    "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'. "
    "Please make sure you already `pip install kernels` and the kernels >= 0.11.1",
    "Loading weights: 100%|██████████| 20/20 [00:00<00:00, 24181.63it/s]",
    f"{SITE}/transformers/modeling_utils.py:3312: FutureWarning: `is_gradient_checkpointing` is "
    "deprecated and will be removed in v6. Use `is_activation_checkpointing` instead.",
    "  warnings.warn(",
    f"{SITE}/torch/utils/checkpoint.py:85: DeprecationWarning: use_reentrant is deprecated",
    '  warnings.warn("use_reentrant")',
    "`torch_dtype` is deprecated! Use `dtype` instead!",
    "Map: 100%|█████| 285/285 [00:00<00:00, 7539.00 examples/s]",
    f"{SITE}/tuitune/trainer/sft.py:54: FutureWarning: tuitune's own notice is shown",
    "  warnings.warn(",
    f"{SITE}/peft/tuners/lora/layer.py:100: UserWarning: fan_in_fan_out is set to False",
    "tuitune: cannot write /runs/x/events.jsonl: [Errno 28] No space left on device",
    "Traceback (most recent call last):",
    '  File "/work/main/tuitune/trainer/child.py", line 68, in _run',
    "ValueError: the option is deprecated and was removed",
]

SHOWN = [
    f"{SITE}/tuitune/trainer/sft.py:54: FutureWarning: tuitune's own notice is shown",
    "  warnings.warn(",
    f"{SITE}/peft/tuners/lora/layer.py:100: UserWarning: fan_in_fan_out is set to False",
    "tuitune: cannot write /runs/x/events.jsonl: [Errno 28] No space left on device",
    "Traceback (most recent call last):",
    '  File "/work/main/tuitune/trainer/child.py", line 68, in _run',
    "ValueError: the option is deprecated and was removed",
]


def test_the_filter_keeps_what_a_user_needs():
    log_filter = LogFilter()
    assert log_filter.lines(TRAIN_LOG) == SHOWN
    assert log_filter.dropped == len(TRAIN_LOG) - len(SHOWN)


def test_the_monitors_log_tail_filters_and_the_file_keeps_everything(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("\n".join(TRAIN_LOG[:6]) + "\n", encoding="utf-8")
    tail = LogTail(log)
    assert tail.read() == []
    with open(log, "a", encoding="utf-8") as handle:
        handle.write("\n".join(TRAIN_LOG[6:]) + "\n")
    assert tail.read() == SHOWN
    assert log.read_text(encoding="utf-8").splitlines() == TRAIN_LOG


def test_library_deprecation_records_stay_out_of_the_events():
    deprecated = "`evaluation_strategy` is deprecated and will be removed in version 4.46"
    assert not keep_library_record("transformers.training_args", logging.WARNING, deprecated)
    assert keep_library_record("transformers.trainer", logging.WARNING, "No label_names provided")
    assert keep_library_record("tuitune", logging.WARNING, "a tuitune notice about a deprecated field")
    assert keep_library_record("peft", logging.ERROR, "loading failed: the key is deprecated")


def test_the_trainers_log_handler_routes_only_kept_records(tmp_path):
    from tuitune.runs import RunDir
    from tuitune.trainer.event_sink import EventSink
    from tuitune.trainer.sft import _EventLogHandler

    run = RunDir.create(tmp_path, "log")
    handler = _EventLogHandler(EventSink(run))
    for name, text in (("transformers.modeling_utils", "`torch_dtype` is deprecated! Use `dtype` instead!"),
                       ("trl.trainer", "Padding-free training is enabled, but the attention is sdpa")):
        handler.handle(logging.LogRecord(name, logging.WARNING, __file__, 1, text, None, None))
    assert [e["text"] for e in run.events()] == ["Padding-free training is enabled, but the attention is sdpa"]
