"""Tests of the terminal app: screens driven through Textual's Pilot (tests.ui.pilot), fakes in tests.ui.fakes."""
