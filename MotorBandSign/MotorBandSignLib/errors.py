"""Exceptions shared by every step.

``InputError`` is raised for problems with what the user gave (files, nodes, parameters);
its message names the problem and the fix. Front ends map it to exit code 2 (CLI) or to a
message box (Slicer); any other exception is an internal failure.
"""


class InputError(ValueError):
    """Bad input: the message says what is wrong and how to fix it."""


class CancelledError(RuntimeError):
    """The user cancelled a running pipeline between two steps."""
