"""The Models screen on several GPUs: the per-GPU need of the run's mode and the mode tuitune would pick."""

from __future__ import annotations

import pytest

from tests.ui.pilot import SIZE, make_app, text_of, wait_until
from tuitune.hardware import FakeGpuSource

pytestmark = pytest.mark.anyio


async def test_detail_says_the_per_gpu_need_and_the_pick(tmp_path):
    app = make_app(tmp_path, gpu_source=FakeGpuSource.h200(2))
    app.config.training.gpus = "2"
    app.config.training.distributed = "ddp"
    app.config.model.method = "lora"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        screen = app.screen
        await wait_until(pilot, lambda: screen.specs and screen.fits and screen.query_values, timeout=10,
                         what="the models screen settling")
        index = next(i for i, spec in enumerate(screen.specs) if spec.name == "llama-3.1-70b")
        screen.table.move_cursor(row=index)
        await wait_until(pilot, lambda: text_of(screen.detail).startswith("llama-3.1-70b"), timeout=10, what="the GPUs line")
        text = text_of(screen.detail)
        assert "On 2 GPUs, ddp:" in text and "GiB per GPU for LORA" in text and "would pick fsdp" in text
