"""Chat tests: targets, presets and history, streaming, the `tuitune chat` command."""
