"""Small data files for the training-method tests: preference pairs and plain text."""

from __future__ import annotations

import json
from pathlib import Path

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?", "What colour is the sky?",
             "Who wrote Hamlet?", "What is two plus two?", "What do bees make?", "Where do penguins live?",
             "What is water made of?"]
ANSWERS = ["Paris.", "Eight.", "Blue.", "Shakespeare.", "Four.", "Honey.", "Antarctica.", "Hydrogen and oxygen."]


def write_pairs(path: Path, repeat: int = 2) -> Path:
    """Pairs whose chosen reply is the pirate one and whose rejected reply is plain."""
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(repeat):
            for question, answer in zip(QUESTIONS, ANSWERS):
                handle.write(json.dumps({"prompt": question, "chosen": f"Ahoy! {answer} Arr!",
                                         "rejected": f"The answer is {answer.lower()}"}) + "\n")
    return path


def write_text(path: Path, repeat: int = 6) -> Path:
    """Plain text documents for continued pretraining."""
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(repeat):
            for question, answer in zip(QUESTIONS, ANSWERS):
                handle.write(json.dumps({"text": f"Log {i}. The pirate asked: {question} The parrot said: {answer}"})
                             + "\n")
    return path
