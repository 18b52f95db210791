"""The one exception family: bad input that the user can fix (message says how)."""


class SLMError(RuntimeError):
    """A problem with the user's input or environment; the message names the thing and the fix."""
