"""Tests of the pure-Python core: config decisions, catalog, fit, hardware, plans and the CLI around them."""
