"""`tuitune chat`: the one-shot --prompt path scripts rely on, and the interactive loop's commands."""

from __future__ import annotations

import io

import pytest

from tuitune.chat import Conversation, preset
from tuitune.cli.chat import Repl
from tuitune.cli.main import main

pytestmark = pytest.mark.slow


def test_prompt_prints_one_greedy_answer_per_prompt_and_exits(smol_run, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = main(["chat", str(smol_run), "--compare", "--prompt", "What is the capital of France?"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == ["> What is the capital of France?", "base:    The capital of France is Paris.",
                   "adapter: The capital of France is Paris."]


def test_bad_flags_are_one_line_errors(smol_run, capsys):
    assert main(["chat", str(smol_run), "--preset", "wild", "--prompt", "x"]) == 2
    assert "Unknown generation preset 'wild'" in capsys.readouterr().err
    assert main(["chat", str(smol_run), "--temperature", "9", "--prompt", "x"]) == 2
    assert "temperature = 9.0 is outside" in capsys.readouterr().err


def test_the_interactive_loop_streams_regenerates_edits_settings_and_copies(smol_engine):
    lines = iter(["What is the capital of France?", "/regen", "/set max 3", "/preset factual", "/set temp 0",
                  "How many legs does a spider have?", "/copy", "/compare", "/system Be brief.", "/nonsense",
                  "/clear", "/quit"])
    out = io.StringIO()
    repl = Repl(smol_engine, preset("greedy", max_new_tokens=24), Conversation(), out=out,
                read=lambda prompt: next(lines))
    assert repl.loop() == 0
    text = out.getvalue()
    assert text.count("model> The capital of France is Paris.") == 2  # asked, then regenerated
    assert "stopped at end of turn" in text and "tokens/s" in text
    assert "hit max new tokens" in text  # /set max 3 carried through /preset, which keeps max_new_tokens
    assert "\x1b]52;c;" in text and "compare mode on" in text and "Unknown command /nonsense" in text
    assert "system prompt set" in text
    assert repl.conversation.turns == [] and repl.conversation.system_prompt == "Be brief."
    assert repl.settings.temperature == 0.0 and repl.settings.max_new_tokens == 3
