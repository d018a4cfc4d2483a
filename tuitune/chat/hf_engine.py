"""The transformers chat engine: one model (with its adapter) in memory, tokens streamed from a thread.

`generate()` runs in a background thread and feeds a `TextIteratorStreamer`; `stream()` yields the
text as it arrives, then a `Finished` with the token count, speed and why it stopped. Compare mode
answers twice with the same model: first with PEFT's `disable_adapter()` (the base), then with it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

from tuitune.chat.events import BASE, STOP_EOS, STOP_LENGTH, STOP_STOPPED, TUNED, Finished, GenerationStats, TextDelta
from tuitune.chat.presets import GenerationSettings, preset
from tuitune.chat.prompting import render_prompt, stop_token_ids
from tuitune.chat.targets import ChatTarget
from tuitune.errors import TuituneError

STREAM_TIMEOUT_S = 600.0  # no token for this long means generation is stuck


class TransformersEngine:
    name = "transformers"

    def __init__(self, target: ChatTarget, *, device: str | None = None):
        import torch

        quiet_libraries()
        self.target = target
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer, self.model = load_model_and_tokenizer(target, self.device)
        self.has_adapter = target.has_adapter
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config.eos_token_id)
        self._lock = threading.Lock()  # one generation at a time: compare toggles the adapter

    @property
    def description(self) -> str:
        return f"{self.target.label} on {self.device} (transformers)"

    # ------------------------------------------------------------------ streaming
    def stream(self, messages: list[dict[str, str]], settings: GenerationSettings, *, use_adapter: bool = True,
               stop_event: threading.Event | None = None, side: str = TUNED) -> Iterator[TextDelta | Finished]:
        """Yield `TextDelta`s as tokens are generated, then one `Finished`."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        settings.check()
        stop_event = stop_event or threading.Event()
        prompt = render_prompt(self.tokenizer, messages)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        prompt_len = inputs["input_ids"].shape[1]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=STREAM_TIMEOUT_S)

        class UserStop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stop_event.is_set(), dtype=torch.bool,
                                  device=input_ids.device)

        kwargs = dict(inputs, streamer=streamer, max_new_tokens=settings.max_new_tokens,
                      eos_token_id=self.stop_ids, pad_token_id=self._pad_id(),
                      stopping_criteria=StoppingCriteriaList([UserStop()]), **sampling_kwargs(settings))
        result: dict = {}
        disable = self.model.disable_adapter() if (self.has_adapter and not use_adapter) else contextlib.nullcontext()

        def work() -> None:
            try:
                if settings.seed is not None:
                    torch.manual_seed(settings.seed)
                with disable:
                    result["output"] = self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced in the consumer's thread
                result["error"] = exc
                streamer.end()

        with self._lock:
            started = time.perf_counter()
            first = None
            thread = threading.Thread(target=work, name="tuitune-generate", daemon=True)
            thread.start()
            pieces: list[str] = []
            completed = False
            try:
                for text in _iterate(streamer):
                    if text:
                        first = first if first is not None else time.perf_counter() - started
                        pieces.append(text)
                        yield TextDelta(text, side)
                completed = True
            finally:
                if not completed:  # the consumer left early (or failed): stop generating
                    stop_event.set()
                thread.join(STREAM_TIMEOUT_S)
            seconds = time.perf_counter() - started
        if "error" in result:
            raise TuituneError(f"Generation failed: {type(result['error']).__name__}: {result['error']}")
        new_ids = result["output"][0, prompt_len:].tolist()
        if stop_event.is_set():
            reason = STOP_STOPPED
        elif new_ids and new_ids[-1] in self.stop_ids:
            reason = STOP_EOS
        else:
            reason = STOP_LENGTH
        stats = GenerationStats(new_tokens=len(new_ids), seconds=seconds, first_token_s=first, stop_reason=reason,
                                prompt_tokens=prompt_len, engine=self.name)
        yield Finished("".join(pieces).strip(), stats, side)

    def compare(self, messages: list[dict[str, str]], settings: GenerationSettings, *,
                stop_event: threading.Event | None = None) -> Iterator[TextDelta | Finished]:
        """The base model's answer (adapter disabled), then the tuned one's, to the same messages."""
        if not self.has_adapter:
            raise TuituneError(f"Compare mode needs an adapter, and {self.target.label} has none. Open a run or "
                               "an adapter folder to compare it with its base model.")
        stop_event = stop_event or threading.Event()
        yield from self.stream(messages, settings, use_adapter=False, stop_event=stop_event, side=BASE)
        if not stop_event.is_set():
            yield from self.stream(messages, settings, use_adapter=True, stop_event=stop_event, side=TUNED)

    # ------------------------------------------------------------------ one-shot
    def generate(self, messages: list[dict[str, str]], settings: GenerationSettings, *,
                 use_adapter: bool = True) -> Finished:
        finished = None
        for event in self.stream(messages, settings, use_adapter=use_adapter):
            if isinstance(event, Finished):
                finished = event
        assert finished is not None
        return finished

    def answer(self, prompt: str, *, max_new_tokens: int = 96, use_adapter: bool = True) -> str:
        """A greedy answer to one user message (the `--prompt` path and the training demo)."""
        settings = preset("greedy", max_new_tokens=max_new_tokens)
        return self.generate([{"role": "user", "content": prompt}], settings, use_adapter=use_adapter).text

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.stop_ids[0]


def _iterate(streamer) -> Iterator[str]:
    import queue

    try:
        yield from streamer
    except queue.Empty:
        raise TuituneError(f"No token for {STREAM_TIMEOUT_S:.0f} s: generation seems stuck.") from None


def sampling_kwargs(settings: GenerationSettings) -> dict:
    if settings.greedy:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None,
                "repetition_penalty": settings.repetition_penalty}
    return {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p,
            "top_k": settings.top_k or None, "repetition_penalty": settings.repetition_penalty}


def load_model_and_tokenizer(target: ChatTarget, device: str):
    """Tokenizer (the adapter's own when it saved one) and model (+ adapter), ready for generation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuitune.model_source import local_folder, resolve_model_source

    folder = local_folder(resolve_model_source(target.base))
    adapter = target.adapter
    tokenizer_dir = adapter if adapter is not None and (adapter / "tokenizer_config.json").exists() else folder
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    kwargs: dict = {"dtype": torch.bfloat16 if device == "cuda" else torch.float32}
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
        if target.method == "qlora":  # as trained: the adapter learned on the 4-bit base
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError) as exc:
        raise TuituneError(f"Cannot load the model from {folder}: {exc}") from None
    if device != "cuda":
        model = model.to(device)
    if adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter))
        except (OSError, ValueError, KeyError) as exc:
            raise TuituneError(f"Cannot load the adapter {adapter} onto {target.base}: {exc}. Check that the "
                               "adapter was trained on this base model.") from None
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    return tokenizer, model.eval()


def quiet_libraries() -> None:
    """Answers go to the terminal: keep library progress bars and notices out of them."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
