"""Exports of a trained adapter: adapter, merged 16-bit, GGUF (+ Ollama Modelfile) and GPTQ, each
verified by reloading before it is reported done, optionally pushed to the Hugging Face Hub.

Importing the package loads no ML library. `formats` (requests, results, choices) is pure Python
for the UI; `runner.run_export` does the work (torch side); `process.start_export` runs it in a
child process for the Export screen.
"""
