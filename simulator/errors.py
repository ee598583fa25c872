"""Errors the simulator reports to a user: one sentence, no traceback."""


class CutoverError(Exception):
    """An operation was refused or failed; the message says what and why."""


class PreflightRefused(CutoverError):
    """A switch was refused before anything changed."""
