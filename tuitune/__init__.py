"""tuitune: LoRA and QLoRA fine-tuning from the terminal."""

__version__ = "0.1.0"
