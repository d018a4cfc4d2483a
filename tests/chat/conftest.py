"""Chat test fixtures: one finished run of the embedded default with an adapter, and one engine for it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smol_run(default_model_dir, tmp_path_factory):
    from tests.adapter_runs import make_adapter_run

    return make_adapter_run(tmp_path_factory.mktemp("chat-runs"), default_model_dir,
                            model_name="smollm2-135m-instruct", name="smol-chat", scale=0.04)


@pytest.fixture(scope="session")
def smol_engine(smol_run):
    from tuitune.chat import open_engine, resolve_target

    return open_engine(resolve_target(str(smol_run)), "transformers")
