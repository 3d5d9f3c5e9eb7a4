"""Errors that reach the user as one line, without a traceback."""


class UserError(ValueError):
    """Bad input from the user: the message names the bad value and what is accepted."""
