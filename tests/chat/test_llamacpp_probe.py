"""The automatic engine choice tries llama.cpp in a child first: a build that crashes in native code
(as llama-cpp-python 0.3.36 did here) must not take the app down; .gguf files then chat via transformers."""

from __future__ import annotations

import pytest

from tuitune.chat import ChatTarget
from tuitune.chat import engines, llamacpp_engine

CRASHES = "import os\nclass Llama:\n    def __init__(self, **kw): pass\n    def create_completion(self, *a, **k): os.abort()\n"
WORKS = "class Llama:\n    def __init__(self, **kw): pass\n    def create_completion(self, *a, **k): return {}\n"


@pytest.mark.parametrize("source, works", [(CRASHES, False), (WORKS, True)])
def test_llamacpp_is_used_only_when_a_child_can_generate(tmp_path, monkeypatch, source, works):
    package = tmp_path / "site" / "llama_cpp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    llamacpp_engine.llamacpp_works.cache_clear()
    gguf = tmp_path / f"model-{works}.gguf"
    gguf.write_bytes(b"GGUF")
    assert llamacpp_engine.llamacpp_works(str(gguf)) is works
    chosen = []
    monkeypatch.setattr(llamacpp_engine, "LlamaCppEngine", lambda target: chosen.append("llama.cpp"))
    import tuitune.chat.hf_engine as hf_engine

    monkeypatch.setattr(hf_engine, "TransformersEngine", lambda target: chosen.append("transformers"))
    engines.open_engine(ChatTarget("gguf", str(gguf), None, "GGUF x"))
    assert chosen == ["llama.cpp" if works else "transformers"]
    llamacpp_engine.llamacpp_works.cache_clear()
