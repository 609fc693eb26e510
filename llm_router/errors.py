"""OpenAI-style errors: every failure the client sees is one of these, never a stack trace."""

from __future__ import annotations

from typing import Any, Optional


def error_body(message: str, type_: str = "invalid_request_error", code: Optional[str] = None,
               param: Optional[str] = None) -> dict[str, Any]:
    """The one place the OpenAI error object is built (JSON replies and stream error events)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: Optional[str] = None, param: Optional[str] = None, headers: Optional[dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


def bad_request(message: str, param: Optional[str] = None, code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def not_found(message: str, code: str = "not_found") -> ApiError:
    return ApiError(404, message, "invalid_request_error", code)


def unauthorized() -> ApiError:
    return ApiError(401, "missing or invalid API key", "invalid_request_error", "invalid_api_key")


def internal_error() -> ApiError:
    return ApiError(500, "internal error; the request id identifies it in the logs", "server_error", "internal_error")
