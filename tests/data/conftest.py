"""Fixtures for the data tests: SmolLM2's tokenizer (no model weights) ."""

from __future__ import annotations

import copy

import pytest


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded default's tokenizer (ChatML template with a default system prompt)."""
    from tuitune.model_source import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def plain_tokenizer(tokenizer):
    """The same tokenizer without a chat template (the Alpaca prompt path)."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = None
    return tok


@pytest.fixture
def default_tokenizer(monkeypatch, tokenizer):
    """Route the CLI's default-model tokenizer to the session one (no second load)."""
    monkeypatch.setattr("tuitune.data.inspection.default_tokenizer", lambda model=None: tokenizer)
    return tokenizer
