"""What a chat engine's stream yields: text as it is generated, then one summary with the speed.

Pure Python: the Chat screen's worker posts these to the UI as they arrive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

BASE = "base"    # compare mode: the answer with the adapter disabled
TUNED = "tuned"  # the answer with the adapter (or the only answer outside compare mode)

STOP_EOS = "eos"          # the model produced its end-of-turn token
STOP_LENGTH = "length"    # max_new_tokens reached
STOP_STOPPED = "stopped"  # the user stopped it


@dataclass(frozen=True)
class TextDelta:
    text: str
    side: str = TUNED


@dataclass(frozen=True)
class GenerationStats:
    new_tokens: int
    seconds: float
    first_token_s: float | None
    stop_reason: str
    prompt_tokens: int = 0
    engine: str = ""

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 2)}

    def describe(self) -> str:
        stop = {STOP_EOS: "stopped at end of turn", STOP_LENGTH: "hit max new tokens",
                STOP_STOPPED: "stopped by you"}.get(self.stop_reason, self.stop_reason)
        return f"{self.new_tokens} tokens in {self.seconds:.1f} s, {self.tokens_per_s:.1f} tokens/s, {stop}"


@dataclass(frozen=True)
class Finished:
    text: str
    stats: GenerationStats
    side: str = TUNED
