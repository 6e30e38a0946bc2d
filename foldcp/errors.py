"""Error types whose messages are meant for the person running a screen."""

from __future__ import annotations


class FoldcpError(Exception):
    """Base class: an error with a message that tells the user what to fix."""


class InputError(FoldcpError):
    """Bad user input, located by file and line (line 0 = the file as a whole)."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {problem}")


class ConfigError(FoldcpError):
    """A configuration value that is missing, of the wrong type or out of range."""


class CheckpointError(FoldcpError):
    """The model checkpoint could not be found, fetched or loaded."""


class ExportError(FoldcpError):
    """A prediction that cannot be exported as it stands (missing or inconsistent files)."""


class OutputError(FoldcpError):
    """An output could not be written (disk full, read-only or unwritable folder); nothing
    partial is left under the output's name."""


def summary(error: BaseException) -> str:
    """An exception in one line for a warning about a fallback: its message's first line (at
    most 200 characters), or its type's name where the message is empty."""
    lines = str(error).splitlines()
    return lines[0][:200] if lines else type(error).__name__
