"""Tests of the trainer process, its launcher and the headless train command."""
