"""Rendering canonical rows to training text, with the character spans that get the loss.

A tokenizer with a chat template renders conversations through `apply_chat_template`; one without
gets the Alpaca prompt below with the eos token after each reply. Each assistant reply's span is
found by rendering the conversation up to that turn (with and without the generation prompt) and
taking the difference, so it covers the reply and its end-of-turn token and nothing of the prompt,
the template's default system prompt or the role headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuitune.data.normalize import Row
from tuitune.errors import TuituneError

ALPACA_PREAMBLE = ("Below is an instruction that describes a task. Write a response that "
                   "completes the request well.")
ALPACA_PREAMBLE_WITH_INPUT = ("Below is an instruction that describes a task, together with an "
                              "input that gives more context. Write a response that completes "
                              "the request well.")
INSTRUCTION_HEADER = "### Instruction:\n"
INPUT_HEADER = "### Input:\n"
RESPONSE_HEADER = "### Response:\n"
SYSTEM_HEADER = "### System:\n"


class TemplateFailure(Exception):
    """The chat template could not render one conversation (the row is skipped)."""


@dataclass
class Rendered:
    text: str
    spans: list[tuple[int, int]]   # character ranges of assistant replies (with end-of-turn token)
    add_special_tokens: bool       # whether tokenizing `text` should add the tokenizer's BOS


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def with_system_prompt(messages: list[dict], system_prompt: str | None) -> list[dict]:
    if system_prompt and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system_prompt}] + list(messages)
    return list(messages)


def _merge_system(messages: list[dict]) -> list[dict]:
    """For templates that refuse a system role: fold the system text into the first user turn."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = "\n\n".join(system) + "\n\n" + rest[0]["content"]
    return rest


def _apply(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=generation_prompt)
    if not isinstance(text, str):  # some processors return a list for a batch of one
        text = text[0]
    return text


def _special_strings(tokenizer) -> list[str]:
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    if getattr(tokenizer, "eos_token", None):
        specials.add(tokenizer.eos_token)
    return sorted((s for s in specials if s), key=len, reverse=True)


def _chat_spans(tokenizer, messages: list[dict], full: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cursor = 0
    specials = None
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        span = None
        prefix = upto = None
        if index:  # a reply that opens the conversation has no prompt to render
            try:
                prefix = _apply(tokenizer, messages[:index], True)
                upto = _apply(tokenizer, messages[:index + 1]).rstrip()
            except Exception:  # noqa: BLE001 - a template may refuse a partial conversation
                prefix = upto = None
        if (prefix is not None and len(prefix) >= cursor and len(upto) > len(prefix)
                and full.startswith(prefix) and full.startswith(upto)):
            span = (len(prefix), len(upto))
        else:
            # The template renders earlier turns differently once later ones exist: find the
            # reply's text itself, then take the special token right after it (end of turn).
            start = full.find(message["content"], cursor)
            if start < 0:
                raise TemplateFailure("the chat template does not reproduce assistant turn "
                                      f"{index + 1} verbatim, so its tokens cannot be located")
            end = start + len(message["content"])
            specials = specials if specials is not None else _special_strings(tokenizer)
            rest = full[end:].lstrip(" ")
            for special in specials:
                if rest.startswith(special):
                    end = full.index(special, end) + len(special)
                    break
            span = (start, end)
        spans.append(span)
        cursor = span[1]
    return spans


def render_chat(tokenizer, messages: list[dict], spans: bool = True) -> Rendered:
    try:
        try:
            full = _apply(tokenizer, messages)
        except Exception:  # noqa: BLE001 - e.g. Gemma's template raises on a system turn
            if not any(m["role"] == "system" for m in messages):
                raise
            messages = _merge_system(messages)
            full = _apply(tokenizer, messages)
    except Exception as exc:  # noqa: BLE001 - jinja errors carry the template's own message
        raise TemplateFailure(f"the chat template refused it: {exc}") from None
    found = _chat_spans(tokenizer, messages, full) if spans else []
    return Rendered(full, found, add_special_tokens=False)


def render_alpaca(tokenizer, row: Row, messages: list[dict]) -> Rendered:
    """The Alpaca prompt, for tokenizers without a chat template; eos after each reply."""
    eos = getattr(tokenizer, "eos_token", None) or ""
    turns = list(messages)
    system = turns.pop(0)["content"] if turns and turns[0]["role"] == "system" else None
    context = row.instruction[1] if row.instruction else ""
    preamble = system or (ALPACA_PREAMBLE_WITH_INPUT if context else ALPACA_PREAMBLE)
    text = preamble + "\n\n"
    spans: list[tuple[int, int]] = []
    first_user = True
    for index, turn in enumerate(turns):
        if turn["role"] == "user":
            if first_user and context:
                text += (f"{INSTRUCTION_HEADER}{row.instruction[0]}\n\n"
                         f"{INPUT_HEADER}{context}\n\n")
            else:
                text += f"{INSTRUCTION_HEADER}{turn['content']}\n\n"
            first_user = False
        elif turn["role"] == "system":
            text += f"{SYSTEM_HEADER}{turn['content']}\n\n"
        else:
            text += RESPONSE_HEADER
            start = len(text)
            text += turn["content"] + eos
            spans.append((start, len(text)))
            if index < len(turns) - 1:
                text += "\n\n"
    return Rendered(text, spans, add_special_tokens=True)


def render_row(row: Row, tokenizer, *, system_prompt: str | None = None,
               spans: bool = True) -> Rendered:
    """The training text of one row and the spans of its assistant replies.

    `spans=False` skips locating the replies (two extra template renders per reply) when only
    the text is needed, as for counting tokens.
    """
    if row.kind == "preference":
        raise TuituneError(preference_refusal())
    if row.kind == "text":
        eos = getattr(tokenizer, "eos_token", None) or ""
        text = row.text if row.text.endswith(eos) else row.text + eos
        return Rendered(text, [(0, len(text))], add_special_tokens=True)
    messages = with_system_prompt(row.messages, system_prompt)
    if has_chat_template(tokenizer):
        return render_chat(tokenizer, messages, spans)
    return render_alpaca(tokenizer, row, messages)


def generation_prompt(messages: list[dict], tokenizer, *, system_prompt: str | None = None) -> str:
    """The text to generate from for a conversation ending with a user turn (chat, evaluation)."""
    messages = with_system_prompt(messages, system_prompt)
    if has_chat_template(tokenizer):
        try:
            return _apply(tokenizer, messages, True)
        except Exception:  # noqa: BLE001
            return _apply(tokenizer, _merge_system(messages), True)
    rendered = render_alpaca(tokenizer, Row(0, messages=messages), messages)
    return rendered.text + ("\n\n" if rendered.spans else "") + RESPONSE_HEADER


def preference_refusal() -> str:
    return ("This dataset holds preference pairs (prompt/chosen/rejected), which train with DPO or "
            "ORPO, not SFT. Set training.objective to auto (pairs pick DPO), dpo or orpo, or give a "
            "dataset of conversations, instructions or text to fine-tune on with SFT.")
