"""The transformers engine on the embedded default with an adapter: streaming, EOS, limits, stop, compare."""

from __future__ import annotations

import gc
import threading

import pytest

from tuitune.chat import BASE, TUNED, Finished, TextDelta, preset

pytestmark = pytest.mark.slow
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
SPIDER = [{"role": "user", "content": "How many legs does a spider have?"}]


def test_tokens_arrive_while_the_answer_is_still_being_generated(smol_engine):
    seen_alive = []
    deltas = []
    finished = None
    for event in smol_engine.stream(FRANCE, preset("greedy", max_new_tokens=32)):
        if isinstance(event, TextDelta):
            if not deltas:  # the first piece of text: generate() must still be running
                seen_alive.append(any(t.name == "tuitune-generate" and t.is_alive() for t in threading.enumerate()))
            deltas.append(event.text)
        else:
            finished = event
    assert seen_alive == [True]
    assert len(deltas) >= 3
    assert isinstance(finished, Finished) and finished.text == "".join(deltas).strip()
    assert finished.text == "The capital of France is Paris."


def test_the_answer_stops_at_the_end_of_turn_token_and_reports_speed(smol_engine):
    done = smol_engine.generate(FRANCE, preset("greedy", max_new_tokens=64))
    stats = done.stats
    assert stats.stop_reason == "eos" and 3 <= stats.new_tokens < 64
    assert stats.tokens_per_s > 0 and stats.first_token_s is not None and stats.prompt_tokens > 10
    assert "tokens/s" in stats.describe() and "end of turn" in stats.describe()


def test_max_new_tokens_limits_the_answer(smol_engine):
    done = smol_engine.generate(SPIDER, preset("greedy", max_new_tokens=4))
    assert (done.stats.stop_reason, done.stats.new_tokens) == ("length", 4)


def test_the_user_can_stop_an_answer(smol_engine):
    stop = threading.Event()
    events = []
    for event in smol_engine.stream(SPIDER, preset("greedy", max_new_tokens=200), stop_event=stop):
        events.append(event)
        stop.set()
    assert events[-1].stats.stop_reason == "stopped" and events[-1].stats.new_tokens < 20


def test_sampling_presets_reach_generate_and_a_seed_repeats_an_answer(smol_engine):
    from tuitune.chat.hf_engine import sampling_kwargs

    assert sampling_kwargs(preset("greedy"))["do_sample"] is False
    creative = sampling_kwargs(preset("creative"))
    assert (creative["do_sample"], creative["temperature"], creative["top_k"]) == (True, 1.0, 100)
    settings = preset("creative", max_new_tokens=12, seed=7)
    first = smol_engine.generate(SPIDER, settings).text
    assert smol_engine.generate(SPIDER, settings).text == first
    assert smol_engine.generate(SPIDER, settings.replace(seed=8)).text != first


def test_compare_streams_base_then_tuned_from_one_model(smol_engine):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    settings = preset("greedy", max_new_tokens=24)
    events = list(smol_engine.compare(SPIDER, settings))
    sides = [e.side for e in events if isinstance(e, TextDelta)]
    assert sides[0] == BASE and sides[-1] == TUNED and sides == sorted(sides, key=[BASE, TUNED].index)
    base, tuned = [e for e in events if isinstance(e, Finished)]
    assert (base.side, tuned.side) == (BASE, TUNED)
    assert base.text != tuned.text  # the adapter changes this answer
    assert base.text == smol_engine.generate(SPIDER, settings, use_adapter=False).text
    assert tuned.text == smol_engine.generate(SPIDER, settings).text  # the adapter is back on afterwards
    assert isinstance(smol_engine.model, PeftModel)
    gc.collect()
    assert sum(isinstance(o, LlamaForCausalLM) for o in gc.get_objects()) == 1  # one model in memory


def test_compare_without_an_adapter_is_refused(default_model_dir):
    from tuitune.chat import ChatTarget
    from tuitune.chat.hf_engine import TransformersEngine
    from tuitune.errors import TuituneError

    engine = TransformersEngine.__new__(TransformersEngine)
    engine.has_adapter, engine.target = False, ChatTarget("model", str(default_model_dir), None, "model x")
    with pytest.raises(TuituneError, match="Compare mode needs an adapter"):
        list(engine.compare(FRANCE, preset("greedy")))
