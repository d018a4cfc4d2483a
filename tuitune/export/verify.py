"""Checks every export passes before it is reported done: logits against the adapter model's, a greedy
answer to a fixed prompt, and the chat template and end-of-turn token carried over unchanged.

The reference (`Probe`) is taken from the tuned model before it is merged or written.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuitune.chat.events import STOP_EOS, STOP_LENGTH
from tuitune.errors import TuituneError

PROBE_PROMPT = "What is the capital of France?"
PROBE_MAX_NEW_TOKENS = 48

# Largest |logit difference| allowed, as a fraction of the reference's largest |logit|, by how the
# export stores its weights (measured on SmolLM2-135M: f16 1.1e-3, bf16 7.3e-3, q8_0 3.5e-2).
# "nf4": the floor when the reference itself ran on a 4-bit base (QLoRA runs): bitsandbytes' 4-bit matmul
# is ~1e-3 relative off the dequantized weights per layer (measured on a tiny random Llama: 4.3e-2 merged
# to bf16, 1.5e-2 to f16, against 2.8e-3 for the float32 merge before storage).
LOGIT_TOLERANCE = {"float32": 1e-4, "f32": 1e-4, "float16": 5e-3, "f16": 5e-3, "bfloat16": 3e-2, "bf16": 3e-2,
                   "q8_0": 1e-1, "nf4": 6e-2}


@dataclass
class Probe:
    messages: list[dict[str, str]]
    input_ids: list[int]     # the rendered prompt
    answer_ids: list[int]    # the tuned model's greedy answer, without its end-of-turn token
    logits: object           # torch.Tensor [prompt + answer tokens, vocab], float32, CPU
    answer: str
    stop_reason: str         # eos | length
    chat_template: str | None
    eos_token: str | None
    stop_ids: list[int]

    @property
    def sequence(self) -> list[int]:
        """Prompt + answer: the export is fed exactly this (teacher forcing) and must agree."""
        return self.input_ids + self.answer_ids


def take_probe(model, tokenizer, stop_ids: list[int]) -> Probe:
    """The tuned model's greedy answer to the fixed prompt and its logits over prompt + answer."""
    from tuitune.chat.prompting import render_prompt

    messages = [{"role": "user", "content": PROBE_PROMPT}]
    ids = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
    new, reason = greedy_ids(model, ids, stop_ids)
    answer_ids = new[:-1] if reason == STOP_EOS else new
    return Probe(messages, ids, answer_ids, logits_of(model, ids + answer_ids),
                 tokenizer.decode(answer_ids, skip_special_tokens=True).strip(), reason,
                 tokenizer.chat_template, tokenizer.eos_token, list(stop_ids))


def logits_of(model, ids: list[int]):
    import torch

    with torch.no_grad():
        tensor = torch.tensor([ids], device=model.device)
        return model(input_ids=tensor).logits[0].float().cpu()


def greedy_ids(model, ids: list[int], stop_ids: list[int]) -> tuple[list[int], str]:
    import torch

    with torch.no_grad():
        tensor = torch.tensor([ids], device=model.device)
        out = model.generate(input_ids=tensor, attention_mask=torch.ones_like(tensor), do_sample=False,
                             max_new_tokens=PROBE_MAX_NEW_TOKENS, eos_token_id=stop_ids,
                             pad_token_id=stop_ids[0], temperature=None, top_p=None, top_k=None)
    new = out[0, len(ids):].tolist()
    return new, (STOP_EOS if new and new[-1] in stop_ids else STOP_LENGTH)


def greedy_answer(model, tokenizer, ids: list[int], stop_ids: list[int]) -> tuple[str, str]:
    new, reason = greedy_ids(model, ids, stop_ids)
    return tokenizer.decode(new, skip_special_tokens=True).strip(), reason


def compare_logits(reference, logits, storage: str, *, quantized_reference: bool = False) -> str:
    """A report line; raises when the difference is beyond the storage type's tolerance (at least the
    4-bit floor when the reference ran on an NF4 base)."""
    diff = (logits - reference).abs().max().item()
    scale = reference.abs().max().item()
    if quantized_reference and LOGIT_TOLERANCE["nf4"] > LOGIT_TOLERANCE[storage]:
        storage = f"{storage} from an NF4 reference"
        tolerance = LOGIT_TOLERANCE["nf4"] * scale
    else:
        tolerance = LOGIT_TOLERANCE[storage] * scale
    agree = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
    line = (f"logits vs the adapter model: max |diff| {diff:.3g} (tolerance {tolerance:.3g} for {storage}), "
            f"top-1 agreement {agree:.0%} over {reference.shape[0]} positions")
    if not diff <= tolerance:
        raise TuituneError(f"Export verification failed: {line}. The exported weights do not reproduce the "
                           "tuned model; the export was not kept.")
    return line


def check_template_and_eos(probe: Probe, *, template: str | None, eos_token: str | None, where: str) -> str:
    """The chat template and EOS token of the export must be the tuned model's."""
    if template != probe.chat_template:
        raise TuituneError(f"Export verification failed: the chat template in {where} differs from the tuned "
                           "model's, so the exported model would be prompted differently. The export was not kept.")
    if eos_token != probe.eos_token:
        raise TuituneError(f"Export verification failed: the end-of-sequence token in {where} is {eos_token!r}, "
                           f"the tuned model's is {probe.eos_token!r}; the export would not stop where the "
                           "tuned model stops. The export was not kept.")
    return f"chat template and EOS {eos_token!r} identical in {where}"


def check_eos_follows(probe: Probe, logits, where: str) -> str:
    """Fed the tuned model's own answer, the export must pick the end-of-turn token next, as the tuned
    model did: the template and EOS survived, so the exported model stops where the trained one stops."""
    if probe.stop_reason != STOP_EOS:
        return (f"the tuned model's answer ran to {PROBE_MAX_NEW_TOKENS} tokens, so there is no end of turn to "
                "compare")
    chosen = int(logits[len(probe.sequence) - 1].argmax())
    if chosen not in probe.stop_ids:
        raise TuituneError(f"Export verification failed: after the tuned model's answer, {where} picks token "
                           f"{chosen} next instead of the end-of-turn token ({probe.stop_ids}); it would not stop "
                           "where the tuned model stops. The export was not kept.")
    return f"{where} ends the tuned model's answer with the end-of-turn token, as the tuned model does"


def describe_stop(reason: str, where: str) -> str:
    """How the export's own greedy answer ended (informational: quantization may change the words)."""
    return (f"{where}'s own greedy answer stopped at the end-of-turn token" if reason == STOP_EOS else
            f"{where}'s own greedy answer ran to {PROBE_MAX_NEW_TOKENS} tokens")
