"""Export test fixtures: finished runs with an adapter on the embedded default and on a tiny random Llama."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smol_export_run(default_model_dir, tmp_path_factory):
    from tests.adapter_runs import make_adapter_run

    return make_adapter_run(tmp_path_factory.mktemp("export-runs"), default_model_dir,
                            model_name="smollm2-135m-instruct", name="smol-export", scale=0.04)


@pytest.fixture(scope="session")
def tiny_export_run(tiny_model_dir, tmp_path_factory):
    from tests.adapter_runs import make_adapter_run

    return make_adapter_run(tmp_path_factory.mktemp("tiny-export-runs"), tiny_model_dir,
                            model_name=str(tiny_model_dir), name="tiny-export", scale=0.5)


@pytest.fixture(scope="session")
def tiny_qlora_run(tiny_model_dir, tmp_path_factory):
    from tests.adapter_runs import make_adapter_run

    return make_adapter_run(tmp_path_factory.mktemp("tiny-qlora-runs"), tiny_model_dir,
                            model_name=str(tiny_model_dir), name="tiny-qlora", scale=0.5, method="qlora")
