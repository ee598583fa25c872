"""Errors the simulator reports to a user: one sentence, no traceback."""


class CutoverError(Exception):
    """An operation was refused or failed; the message says what and why."""


class Refused(CutoverError):
    """A command was refused before it changed anything (bad input, nothing to do, a lock held)."""


class PreflightRefused(Refused):
    """A switch was refused before anything changed."""
