"""The one vocabulary of refusals, raised by services, access checks, parsers and views alike.

Each edge turns them into its own dialect, with the status codes and bodies its clients
know: GitLab's JSON (``pipelines.api.gitlab.errors``), the dialects' ``{"message": ...}``
(``pipelines.api.dialect``), GraphQL's ``errors`` with ``extensions.code``
(``pipelines.api.graphql.schema``). A refusal changes nothing: every write is one service's
transaction, which the exception rolls back on its way out.

    DomainError
    ├── InvalidInput        400  what the request says cannot be taken
    │   ├── InvalidParameter     a parameter refused as such (GitLab words it {"error": ...})
    │   ├── MalformedInput       refused before any view reads it: not text, not storable...
    │   │   └── InvalidJSON      not JSON at all
    │   └── TransitionRefused    a status move GitLab's state machines refuse
    ├── NotAuthenticated    401  no credentials, or ones unknown, revoked or expired
    ├── Forbidden           403  a known caller without the scope or the permission
    ├── NotFound            404
    │   └── ProjectHidden        the caller holds nothing on the project: answered as missing
    └── Conflict            409  the request collides with stored rows (a unique name taken)
"""

from __future__ import annotations

from collections.abc import Mapping


class DomainError(Exception):
    """A request refused; ``status_code`` is the HTTP status the edges answer with.

    ``fields`` (problems by field) is set when the refusal is about named fields; GitLab
    answers those as its validation errors, ``{"message": {field: [problem, ...]}}``.
    """

    status_code = 400

    def __init__(self, message: str, *, fields: Mapping[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = dict(fields) if fields is not None else None

    @classmethod
    def about(cls, field: str, problem: str) -> DomainError:
        """A refusal of one field, worded as GitLab's validation errors word it."""
        return cls(f"{field} {problem}", fields={field: [problem]})


class InvalidInput(DomainError):
    status_code = 400


class InvalidParameter(InvalidInput):
    """A query or body parameter refused by its own rules (``ref is missing``)."""


class MalformedInput(InvalidInput):
    """Input refused before any view reads it; the message says what is wrong."""


class InvalidJSON(MalformedInput):
    """Text that is not JSON at all (as opposed to JSON holding what is refused)."""


class TransitionRefused(InvalidInput):
    """A job or pipeline move GitLab's state machines do not make."""


class NotAuthenticated(DomainError):
    status_code = 401


class Forbidden(DomainError):
    """The caller is known but may not do this; ``message`` says which right is missing."""

    status_code = 403


class NotFound(DomainError):
    status_code = 404


class ProjectHidden(NotFound):
    """The caller holds nothing on the project: each edge answers with its own "not found",
    word for word what a missing project gets, so no one learns which projects exist."""

    def __init__(self):
        super().__init__("not found")


class Conflict(DomainError):
    status_code = 409
