"""One error type and one envelope, shaped like OpenAI's, for every failure a client can see."""

from __future__ import annotations

from typing import Any


class OpenAIError(Exception):
    """An error answered as `{"error": {"message", "type", "param", "code"}}` with `status`.

    `type` is also the label of `easel_errors_total`, so keep it short and of low cardinality.
    """

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, "invalid_request_error", param, code)


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(404, f"The model '{model}' does not exist or you do not have access to it.",
                       "invalid_request_error", "model", "model_not_found")


def server_error(message: str, code: str = "server_error", status: int = 500) -> OpenAIError:
    return OpenAIError(status, message, "server_error", None, code)


def unavailable(message: str, retry_after: int = 5) -> OpenAIError:
    return OpenAIError(503, message, "server_error", None, "service_unavailable",
                       {"Retry-After": str(retry_after)})


def storage_unavailable(message: str, retry_after: int = 10) -> OpenAIError:
    """Image storage is down: a clean 503 the client may retry, like a queue outage."""
    return OpenAIError(503, message, "server_error", None, "storage_unavailable",
                       {"Retry-After": str(retry_after)})


def adapter_unavailable(message: str) -> OpenAIError:
    """A LoRA adapter named in `loras` that the workers failed to load: only the operator can
    fix that, so no Retry-After, `x-should-retry: false` (OpenAI's SDKs then do not retry), and
    a code of its own, which background jobs do not wait on (service.job_runner.WAIT_CODES)."""
    return OpenAIError(503, message, "server_error", "loras", "adapter_unavailable",
                       {"x-should-retry": "false"})
