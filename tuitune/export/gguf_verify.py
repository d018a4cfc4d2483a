"""Verify a written GGUF file: its metadata (template, EOS, vocabulary), then a reload by llama.cpp
(when installed) or transformers' GGUF loader, logits on the probe prompt and a greedy answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tuitune.chat.events import STOP_EOS, STOP_LENGTH
from tuitune.errors import TuituneError
from tuitune.export.formats import KQUANTS
from tuitune.export.verify import (PROBE_MAX_NEW_TOKENS, Probe, check_eos_follows, check_template_and_eos,
                                  compare_logits, describe_stop)

RELOADERS = ("auto", "llama.cpp", "transformers")


@dataclass
class GgufMeta:
    architecture: str
    chat_template: str | None
    eos_token: str | None
    tokens: list[str]
    tensors: int


def read_meta(path: Path) -> GgufMeta:
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def value(key):
        field = reader.fields.get(key)
        return field.contents() if field is not None else None

    tokens = value("tokenizer.ggml.tokens") or []
    eos = value("tokenizer.ggml.eos_token_id")
    return GgufMeta(value("general.architecture"), value("tokenizer.chat_template"),
                    tokens[eos] if eos is not None and eos < len(tokens) else None, tokens, len(reader.tensors))


def verify_gguf(path: Path, probe: Probe, tokenizer, quant: str, *, reloader: str = "auto") -> tuple[list[str], str]:
    """Report lines and the file's greedy answer; raises TuituneError when a check fails."""
    meta = read_meta(path)
    checks = [check_template_and_eos(probe, template=meta.chat_template, eos_token=meta.eos_token,
                                     where="the GGUF metadata")]
    expected = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if meta.tokens[:len(expected)] != expected:
        raise TuituneError(f"Export verification failed: the vocabulary in {path.name} differs from the tuned "
                           "model's tokenizer. The export was not kept.")
    checks.append(f"vocabulary of {len(meta.tokens)} tokens identical; {meta.tensors} tensors, "
                  f"architecture {meta.architecture}")
    use = reloader
    if use == "auto":
        from tuitune.chat.llamacpp_engine import llamacpp_works

        use = "llama.cpp" if llamacpp_works(str(path)) else "transformers"
    if use == "llama.cpp":
        logits, answer, reason = _llamacpp_reload(path, probe)
    else:
        logits, answer, reason = _transformers_reload(path, probe, tokenizer)
    where = f"the GGUF file ({use})"
    if quant not in KQUANTS:  # K-quants are checked by their answer: logit error grows with fewer bits
        checks.append(compare_logits(probe.logits, logits, quant).replace("logits", f"logits ({use} reload)", 1))
    checks += [check_eos_follows(probe, logits, where), describe_stop(reason, where)]
    return checks, answer


def _llamacpp_reload(path: Path, probe: Probe):
    import numpy as np
    import torch
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=max(512, len(probe.sequence) + PROBE_MAX_NEW_TOKENS + 16),
                logits_all=True, n_threads=os.cpu_count() or 1, verbose=False)
    llm.eval(probe.sequence)
    logits = torch.from_numpy(np.array(llm.scores[:len(probe.sequence)], dtype=np.float32))
    llm.reset()
    # The answer goes through llama.cpp's own tokenizer and the chat template stored in the file.
    reply = llm.create_chat_completion(messages=probe.messages, temperature=0.0, top_k=1,
                                       max_tokens=PROBE_MAX_NEW_TOKENS, repeat_penalty=1.0)
    choice = reply["choices"][0]
    reason = STOP_LENGTH if choice.get("finish_reason") == "length" else STOP_EOS
    if hasattr(llm, "close"):
        llm.close()
    return logits, (choice["message"]["content"] or "").strip(), reason


def _transformers_reload(path: Path, probe: Probe, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from tuitune.export.verify import greedy_answer, logits_of

    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except Exception as exc:  # the GGUF loader raises many types; any of them means the file is unusable
        raise TuituneError(f"Export verification failed: transformers cannot load {path.name} ({exc}). The "
                           "export was not kept.") from None
    model.eval()
    logits = logits_of(model, probe.sequence)
    answer, reason = greedy_answer(model, tokenizer, probe.input_ids, probe.stop_ids)
    del model
    return logits, answer, reason
