"""Measuring a model beyond its training loss: held-out perplexity and exact match, lm-evaluation-harness
tasks, base and tuned side by side (`tuitune eval`, the Runs screen's Evaluate action)."""
