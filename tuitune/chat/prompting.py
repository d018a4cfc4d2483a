"""From messages to the model's prompt text, and which tokens end a turn (works on any HF tokenizer).

Imports nothing heavy itself; callers pass a loaded tokenizer. Export verification and the Ollama
Modelfile use the same stop-token rules as chat, so an exported model stops where chat stops.
"""

from __future__ import annotations

# End-of-turn markers of the common chat templates (ChatML, Llama 3, Gemma, Phi-3, Mistral/Llama 2).
END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>")


def render_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    """The text the model continues: its chat template with the generation prompt, else an Alpaca prompt."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = []
    for message in messages:
        if message["role"] == "system":
            parts.append(message["content"] + "\n\n")
        elif message["role"] == "user":
            parts.append(f"### Instruction:\n{message['content']}\n\n### Response:\n")
        else:
            parts.append(message["content"] + (tokenizer.eos_token or "") + "\n\n")
    return "".join(parts)


def stop_token_ids(tokenizer, generation_eos=None) -> list[int]:
    """Token ids that end an answer: the tokenizer's EOS, the generation config's EOS ids, and the
    template's end-of-turn marker when the template uses one."""
    ids: list[int] = []

    def add(token_id) -> None:
        if isinstance(token_id, int) and token_id >= 0 and token_id not in ids:
            ids.append(token_id)

    add(tokenizer.eos_token_id)
    for token_id in (generation_eos if isinstance(generation_eos, (list, tuple)) else [generation_eos]):
        add(token_id)
    template = getattr(tokenizer, "chat_template", None) or ""
    for marker in END_OF_TURN_MARKERS:
        if marker in template:
            token_id = tokenizer.convert_tokens_to_ids(marker)
            if token_id != tokenizer.unk_token_id:
                add(token_id)
    return ids


def stop_strings(tokenizer) -> list[str]:
    """The stop tokens as text (for llama.cpp's and Ollama's stop lists)."""
    return [tokenizer.convert_ids_to_tokens(i) for i in stop_token_ids(tokenizer)]
