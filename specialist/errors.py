"""The one exception hierarchy; serve maps each class to an HTTP status in one place."""

from __future__ import annotations


class SpecialistError(Exception):
    """Base of every error this project raises on purpose; the message is safe to show a user."""

    status_code = 500


class InvalidInput(SpecialistError):
    """The caller sent something malformed; the message says what and how to fix it."""

    status_code = 422


class InvalidDocument(InvalidInput):
    """A knowledge-base document cannot be parsed or indexed."""


class InvalidTranscript(InvalidInput):
    """A support transcript file has no usable conversation."""


class NotFound(SpecialistError):
    """An id that does not exist (document, conversation, run, order...)."""

    status_code = 404


class ToolDenied(SpecialistError):
    """A tool refused the request (authorization or a business rule); relayed to the customer."""

    status_code = 403


class PolicyViolation(ToolDenied):
    """A billing or CRM rule forbids the action (e.g. returning an order that is not delivered)."""


class Unauthorized(SpecialistError):
    """No or bad credentials."""

    status_code = 401


class Forbidden(SpecialistError):
    """Valid credentials without the role or ownership the route needs."""

    status_code = 403


class Conflict(SpecialistError):
    """The request clashes with current state (e.g. promoting an ungated run)."""

    status_code = 409


class GateFailed(Conflict):
    """A candidate model did not beat the base model on held-out transcripts."""


class RateLimited(SpecialistError):
    """Too many requests for one key."""

    status_code = 429


class BackendUnavailable(SpecialistError):
    """A backing service is down; retry later."""

    status_code = 503
    retry_after_s = 5


class KnowledgeBaseUnavailable(BackendUnavailable):
    """The vector store cannot be reached or opened."""


class ModelUnavailable(BackendUnavailable):
    """The behaviour model backend cannot be reached or loaded."""
