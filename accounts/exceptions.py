"""Domain errors raised by services. Each carries a stable ``code`` that views render as a JSON error
or a form message, and the HTTP status that fits it."""


class ServiceError(Exception):
    status = 400

    def __init__(self, code: str, message: str, *, field: str | None = None):
        self.code = code
        self.message = message
        self.field = field
        super().__init__(message)


class InvalidInput(ServiceError):
    status = 400


class NotAllowed(ServiceError):
    """The caller can see the object (a member) but their role does not allow the action."""

    status = 403


class Conflict(ServiceError):
    status = 409
