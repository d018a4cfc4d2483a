"""Held-out metrics that need nothing but the model and a file: perplexity over the trained tokens and the
exact match of greedy answers against the file's replies. Offline, always."""

from __future__ import annotations

import math
import re
from typing import Any

EM_MAX_NEW_TOKENS = 64


def normalize(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation: "Paris." and "paris" match."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(" .!?,;:'\"")


def perplexity(model, tokenizer, rows: list, *, max_seq_length: int, responses_only: bool,
               system_prompt: str | None) -> dict[str, Any]:
    """Mean negative log-likelihood over the tokens training would score (replies only when
    `responses_only`), and its exponential."""
    import torch

    from tuitune.data import tokenize_rows

    tokenized = tokenize_rows([r for r in rows if r.kind != "preference"] or _chosen_as_conversations(rows),
                              tokenizer, max_seq_length=max_seq_length, responses_only=responses_only,
                              packing=False, system_prompt=system_prompt)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, mask in zip(tokenized.input_ids, tokenized.completion_mask):
            input_ids = torch.tensor([ids], device=device)
            labels = input_ids.masked_fill(torch.tensor([mask], device=device) == 0, -100)
            scored = int((labels[:, 1:] != -100).sum())
            if scored == 0:
                continue
            loss = model(input_ids=input_ids, labels=labels).loss
            total += float(loss) * scored
            count += scored
    if count == 0:
        return {"loss": None, "perplexity": None, "tokens": 0}
    mean = total / count
    return {"loss": mean, "perplexity": math.exp(min(mean, 50.0)), "tokens": count}


def _chosen_as_conversations(rows: list) -> list:
    from tuitune.data import Row

    return [Row(r.number, messages=list(r.messages) + list(r.chosen)) for r in rows if r.kind == "preference"]


def qa_pairs(rows: list) -> list[tuple[list[dict], str]]:
    """(prompt turns, reference reply) of each row with a final assistant reply (preference: the chosen one)."""
    pairs = []
    for row in rows:
        if row.kind == "preference":
            turns, reply = row.messages, row.chosen[-1]["content"] if row.chosen else None
        elif row.kind == "conversation" and row.messages and row.messages[-1]["role"] == "assistant":
            turns, reply = row.messages[:-1], row.messages[-1]["content"]
        else:
            continue
        if turns and reply:
            pairs.append((turns, reply))
    return pairs


def exact_match(model, tokenizer, rows: list, *, system_prompt: str | None, limit: int) -> dict[str, Any]:
    """Share of greedy answers equal to the reference reply after `normalize` (None when no row has one)."""
    import torch

    from tuitune.data import generation_prompt

    pairs = qa_pairs(rows)[:limit]
    if not pairs:
        return {"exact_match": None, "answered": 0}
    device = next(model.parameters()).device
    hits = 0
    examples = []
    for turns, reference in pairs:
        prompt = generation_prompt(turns, tokenizer, system_prompt=system_prompt)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
        budget = min(EM_MAX_NEW_TOKENS, len(tokenizer(reference, add_special_tokens=False).input_ids) + 8)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=budget, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        hit = normalize(answer) == normalize(reference)
        hits += hit
        if len(examples) < 3:
            examples.append({"reference": reference, "answer": answer.strip(), "match": hit})
    return {"exact_match": hits / len(pairs), "answered": len(pairs), "examples": examples}
