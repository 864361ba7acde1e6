"""Hostile-input corpus: crafted files built at test time, one test per input, grouped by class of fault."""
