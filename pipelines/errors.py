"""Errors the service layer raises; every edge turns them into a 4xx in its own dialect."""


class ServiceError(Exception):
    """A request the domain refuses. ``status_code`` is the HTTP status an API should use."""

    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    status_code = 400


class TransitionRefused(ServiceError):
    status_code = 400


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409
