"""Domain errors of copy-trading writes, with the client API's error codes."""


class CopyTradingError(Exception):
    """A refused write. `code` is a client API error code (spec/client-api.md)."""

    code = "VALIDATION_ERROR"

    def __init__(self, message: str, *, code: str | None = None, fields: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def validation_error(field: str, message: str) -> CopyTradingError:
    """A VALIDATION_ERROR naming one field."""
    return CopyTradingError(f"{field}: {message}", fields={field: [message]})
