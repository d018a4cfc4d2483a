from __future__ import annotations

import copy

import pytest

from tuitune.data import build_training_dataset, tokenize_rows
from tuitune.data.normalize import Row
from tuitune.data.rendering import generation_prompt, render_row
from tuitune.data.tokenization import SFT_SETTINGS, encode_row
from tuitune.errors import TuituneError

END = "<|im_end|>"


def conversation(*turns: str, system: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    for index, text in enumerate(turns):
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": text})
    return messages


def masked_runs(tokenizer, ids: list[int], mask: list[int]) -> list[str]:
    """The decoded text of each contiguous run of loss tokens."""
    runs, current = [], []
    for token, bit in zip(ids, mask):
        if bit:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run) for run in runs]


MULTI_TURN = conversation("What is 2+2?", "It is 4.", "And 3+3?", "That makes 6!",
                          "Name a prime.", "Seven: 7 is prime. 🦜")


@pytest.mark.parametrize("messages", [
    conversation("Capital of France?", "Paris."),
    MULTI_TURN,
    conversation("Hi", "Hello, sailor!", system="You are a pirate."),
    conversation("Line one\nline two?", "Answer with\nnewlines\n\nand a blank line."),
], ids=["single", "multi-turn", "system", "newlines"])
def test_mask_covers_exactly_the_assistant_replies(tokenizer, messages):
    ids, mask = encode_row(Row(1, messages=messages), tokenizer, responses_only=True)
    replies = [m["content"] + END for m in messages if m["role"] == "assistant"]
    assert masked_runs(tokenizer, ids, mask) == replies
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(ids) == full
    assert len(ids) == len(mask)


def test_default_system_prompt_of_the_template_gets_no_loss(tokenizer):
    ids, mask = encode_row(Row(1, messages=conversation("Hi", "Hello")), tokenizer)
    text = tokenizer.decode(ids)
    assert "You are a helpful AI assistant named SmolLM" in text  # SmolLM2's default system prompt
    prompt_ids = [t for t, bit in zip(ids, mask) if not bit]
    assert "SmolLM" in tokenizer.decode(prompt_ids)


def test_system_prompt_option_replaces_the_default(tokenizer):
    row = Row(1, messages=conversation("Hi", "Ahoy"))
    text = render_row(row, tokenizer, system_prompt="Talk like a pirate.").text
    assert "Talk like a pirate." in text and "SmolLM" not in text
    kept = render_row(Row(1, messages=conversation("Hi", "Ahoy", system="Own.")), tokenizer,
                      system_prompt="Talk like a pirate.").text
    assert "Own." in kept and "Talk like a pirate." not in kept


def test_responses_only_false_trains_on_everything(tokenizer):
    ids, mask = encode_row(Row(1, messages=MULTI_TURN), tokenizer, responses_only=False)
    assert mask == [1] * len(ids)


def test_plain_text_gets_loss_everywhere_and_one_eos(tokenizer):
    ids, mask = encode_row(Row(1, text="The sea is wide."), tokenizer, responses_only=True)
    assert mask == [1] * len(ids)
    assert ids[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1
    assert tokenizer.decode(ids) == "The sea is wide." + tokenizer.eos_token


def test_alpaca_prompt_without_chat_template(plain_tokenizer):
    row = Row(1, messages=[{"role": "user", "content": "Add them.\n\n2 and 3"},
                           {"role": "assistant", "content": "5"}], instruction=("Add them.", "2 and 3"))
    rendered = render_row(row, plain_tokenizer)
    assert rendered.text.startswith("Below is an instruction that describes a task")
    assert "### Instruction:\nAdd them.\n\n### Input:\n2 and 3\n\n### Response:\n5" in rendered.text
    assert rendered.text.endswith("5" + plain_tokenizer.eos_token)
    ids, mask = encode_row(row, plain_tokenizer)
    assert masked_runs(plain_tokenizer, ids, mask) == ["5" + plain_tokenizer.eos_token]
    ids, mask = encode_row(Row(2, messages=MULTI_TURN), plain_tokenizer)
    eos = plain_tokenizer.eos_token
    assert masked_runs(plain_tokenizer, ids, mask) == [
        "It is 4." + eos, "That makes 6!" + eos, "Seven: 7 is prime. 🦜" + eos]
    assert "### Input:" not in plain_tokenizer.decode(ids)


def test_generation_prompt_both_paths(tokenizer, plain_tokenizer):
    prompt = generation_prompt([{"role": "user", "content": "Hi"}], tokenizer)
    assert prompt.endswith("<|im_start|>assistant\n")
    alpaca = generation_prompt([{"role": "user", "content": "Hi"}], plain_tokenizer)
    assert alpaca.endswith("### Instruction:\nHi\n\n### Response:\n")


def test_template_refusing_system_role_gets_it_merged(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<turn>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<turn>assistant\n{% endif %}")
    row = Row(1, messages=conversation("Hi", "Hello", system="Be brief."))
    ids, mask = encode_row(row, tok)
    assert "Be brief.\n\nHi" in tok.decode(ids)
    assert masked_runs(tok, ids, mask) == ["Hello" + END]


def test_template_marking_the_last_turn_falls_back_to_searching(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if loop.last %}[final] {% endif %}"
        "{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    ids, mask = encode_row(Row(1, messages=MULTI_TURN), tok)
    # The token " Seven" straddles the marker's space and the reply: it holds reply text, so it
    # gets loss; the marker itself does not.
    assert masked_runs(tok, ids, mask) == ["It is 4.<|im_end|>", "That makes 6!<|im_end|>",
                                           " Seven: 7 is prime. 🦜<|im_end|>"]


def test_template_that_rewrites_replies_is_a_row_problem(tokenizer):
    tok = copy.deepcopy(tokenizer)
    # Earlier replies are shouted once later turns exist: the reply text is nowhere verbatim.
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {% if loop.last %}{{ m['content'] }}"
                         "{% else %}{{ m['content'] | upper }}{% endif %}\n"
                         "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    good = Row(1, messages=conversation("Q", "ANSWER", "Q2", "more"))
    bad = Row(2, messages=conversation("q", "answer", "q2", "more"))
    result = tokenize_rows([good, bad], tok, max_seq_length=64)
    assert len(result.input_ids) == 1 and result.numbers == [1]
    assert [(p.row, p.kind) for p in result.problems] == [(2, "template_error")]


def test_truncation_is_reported_and_rows_without_loss_are_dropped(tokenizer):
    long_reply = Row(1, messages=conversation("Count.", " ".join(str(i) for i in range(200))))
    long_prompt = Row(2, messages=conversation(" ".join(["word"] * 200), "ok"))
    result = tokenize_rows([long_reply, long_prompt], tokenizer, max_seq_length=64)
    assert [len(ids) for ids in result.input_ids] == [64]
    assert result.numbers == [1]
    kinds = [(p.row, p.kind) for p in result.problems]
    assert kinds == [(1, "too_long"), (2, "too_long"), (2, "no_loss_tokens")]
    assert "truncated to the first 64" in result.problems[0].message
    assert result.truncated == 2 and result.dropped == 1


def test_packing_splits_long_text_instead_of_truncating(tokenizer):
    row = Row(1, text=" ".join(f"w{i}" for i in range(300)))
    packed = tokenize_rows([row], tokenizer, max_seq_length=50, packing=True)
    assert len(packed.input_ids) > 2 and all(len(c) <= 50 for c in packed.input_ids)
    whole, _ = encode_row(row, tokenizer)
    assert sum(packed.input_ids, []) == whole
    truncated = tokenize_rows([row], tokenizer, max_seq_length=50, packing=False)
    assert [len(c) for c in truncated.input_ids] == [50]


def test_build_training_dataset_columns(tokenizer):
    rows = [Row(1, messages=MULTI_TURN), {"text": "plain"}, {"messages": conversation("a", "b")}]
    dataset = build_training_dataset(rows, tokenizer, max_seq_length=256, responses_only=True,
                                     packing=False)
    assert dataset.column_names == ["input_ids", "completion_mask"] and len(dataset) == 3
    assert all(len(r["input_ids"]) == len(r["completion_mask"]) for r in dataset)
    assert all(set(r["completion_mask"]) == {1} for r in [dataset[1]])


def test_preference_pairs_are_refused_for_training(tokenizer):
    row = Row(1, messages=conversation("q"), chosen=[{"role": "assistant", "content": "a"}],
              rejected=[{"role": "assistant", "content": "b"}])
    with pytest.raises(TuituneError, match="preference pairs .* DPO"):
        build_training_dataset([row], tokenizer, max_seq_length=64, responses_only=True, packing=False)
    with pytest.raises(TuituneError, match="DPO"):
        build_training_dataset([], tokenizer, max_seq_length=64, responses_only=True,
                               packing=False, format="preference")


def test_nothing_left_to_train_on(tokenizer):
    with pytest.raises(TuituneError, match="No row is left to train on"):
        build_training_dataset([Row(1, messages=conversation("long " * 100, "x"))], tokenizer,
                               max_seq_length=16, responses_only=True, packing=False)


def test_trl_sft_trainer_turns_the_mask_into_labels(tokenizer, tmp_path):
    """TRL 1.16 accepts the pre-tokenized dataset; completion_only_loss=True is what applies the mask."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    rows = [Row(i, messages=conversation(f"Question {i}?", f"Answer {i}.", "More?", f"Yes {i}."))
            for i in range(1, 5)]
    dataset = build_training_dataset(rows, tokenizer, max_seq_length=128, responses_only=True,
                                     packing=False)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    model = LlamaForCausalLM(config)

    def prepared(packing: bool, **settings):
        args = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to=[],
                         max_length=128, packing=packing, disable_tqdm=True, **settings)
        return SFTTrainer(model=model, args=args, train_dataset=dataset,
                          processing_class=tokenizer).train_dataset

    for packing in (False, True):
        train = prepared(packing, **SFT_SETTINGS)
        assert "labels" in train.column_names
        labelled = [tokenizer.decode([t for t, label in zip(ex["input_ids"], ex["labels"]) if label != -100])
                    for ex in train]
        expected = "".join(f"Answer {i}.{END}Yes {i}.{END}" for i in range(1, 5))
        assert sorted("".join(labelled).split(END)) == sorted(expected.split(END))
    default = prepared(False)[0]  # without completion_only_loss every token is a label
    assert all(label != -100 for label in default["labels"])


def test_conversation_opening_with_an_assistant_turn(tokenizer):
    messages = [{"role": "assistant", "content": "Ahoy, what do ye need?"},
                {"role": "user", "content": "Gold."}, {"role": "assistant", "content": "Arr, none left."}]
    ids, mask = encode_row(Row(1, messages=messages), tokenizer)
    assert masked_runs(tokenizer, ids, mask) == ["Ahoy, what do ye need?" + END, "Arr, none left." + END]
