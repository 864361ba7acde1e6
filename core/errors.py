"""The one exception type for problems with what a user gave us (files, CSVs, archives, configs)."""


class InputError(ValueError):
    """Bad user input. The message names the file (or field) and the problem, in plain words."""
