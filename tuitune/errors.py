"""The one exception users see: a short paragraph that names the thing at fault and what to do."""


class TuituneError(Exception):
    """An error caused by the user's input or environment, shown without a traceback."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
