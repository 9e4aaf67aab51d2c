"""One error tree for domain failures, mapped once to HTTP status / CLI exit at the edges."""

from __future__ import annotations


class PyscaleError(Exception):
    http_status = 500
    grpc_code = 13  # INTERNAL


class NotFound(PyscaleError):
    http_status = 404
    grpc_code = 5


class Conflict(PyscaleError):
    http_status = 409
    grpc_code = 6


class Invalid(PyscaleError):
    http_status = 400
    grpc_code = 3


class Expired(PyscaleError):
    http_status = 400
    grpc_code = 9  # FAILED_PRECONDITION


class Unauthorized(PyscaleError):
    http_status = 401
    grpc_code = 16
