"""The tokenizer half of a GGUF file: tokens, merges, special ids, pre-tokenizer and chat template.

A base model that came from a GGUF file (the embedded default does) keeps that file's tokenizer
metadata verbatim, so llama.cpp tokenizes exactly as before. A Hugging Face base goes through
gguf-py's own readers (`SpecialVocab`, `LlamaHfVocab`). The chat template is always the run's.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tuitune.errors import TuituneError

# tokenizer.json pre-tokenizer split patterns -> llama.cpp pre-tokenizer names
_LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
KNOWN_SPLITS = {_LLAMA3_SPLIT: "llama-bpe", _QWEN2_SPLIT: "qwen2"}


def add_tokenizer(writer, tokenizer, *, source_gguf: Path | None) -> list[str]:
    """Write the tokenizer keys; notes for the export report (e.g. a guessed pre-tokenizer)."""
    if source_gguf is not None:
        _copy_tokenizer_fields(writer, source_gguf)
        notes = [f"tokenizer copied from the base model's GGUF ({source_gguf.name})"]
    else:
        with tempfile.TemporaryDirectory(prefix="tuitune-tok-") as folder:
            tokenizer.save_pretrained(folder)
            notes = _hf_tokenizer(writer, tokenizer, Path(folder))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
    return notes


def _copy_tokenizer_fields(writer, path: Path) -> None:
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(path)
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer.") or key == "tokenizer.chat_template":
            continue
        kind = field.types[0]
        value = field.contents()
        if kind == GGUFValueType.ARRAY:
            writer.add_key_value(key, value, kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, value, kind)


def _hf_tokenizer(writer, tokenizer, folder: Path) -> list[str]:
    import gguf

    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")) if (
        folder / "tokenizer.json").exists() else None
    if data is None:
        raise TuituneError("The tokenizer of this model has no tokenizer.json (a fast tokenizer), which the "
                           "GGUF writer reads. Export the merged format and convert it with llama.cpp's "
                           "convert_hf_to_gguf.py instead.")
    model = data.get("model", {})
    if model.get("type") == "BPE" and model.get("byte_fallback"):  # SentencePiece-style (Llama 2, Mistral)
        vocab = gguf.LlamaHfVocab(folder)
        tokens, scores, types = zip(*vocab.all_tokens())
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(list(tokens))
        writer.add_token_scores(list(scores))
        writer.add_token_types(list(types))
        gguf.SpecialVocab(folder, load_merges=False, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
        return ["tokenizer: SentencePiece-style BPE (llama)"]
    if model.get("type") != "BPE":
        raise TuituneError(f"The GGUF writer handles BPE tokenizers; this one is {model.get('type')!r}. Export "
                           "the merged format and convert it with llama.cpp's convert_hf_to_gguf.py.")
    tokens, types = _bpe_tokens(tokenizer)
    pre, note = _pre_tokenizer(data)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
    return [f"tokenizer: byte-level BPE, pre-tokenizer {pre}"] + ([note] if note else [])


def _bpe_tokens(tokenizer) -> tuple[list[str], list[int]]:
    import gguf

    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    by_id = {i: t for t, i in vocab.items()}
    added = {t.content: t for t in tokenizer.added_tokens_decoder.values()}
    tokens, types = [], []
    for i in range(size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif token in added:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if added[token].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _pre_tokenizer(data: dict) -> tuple[str, str | None]:
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    for step in steps:
        pattern = (step.get("pattern") or {}).get("Regex") if step.get("type") == "Split" else None
        if pattern in KNOWN_SPLITS:
            return KNOWN_SPLITS[pattern], None
    if [s.get("type") for s in steps] == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt2", None
    return "default", ("pre-tokenizer not recognised: llama.cpp will split text with its default rule, "
                       "which may tokenize some inputs differently from transformers")
