"""Every refusal of the service is a 4xx (or 503/504) JSON body `{"detail": ...}`."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A request the service refuses, with the status code and a message naming the problem."""

    def __init__(
        self, status_code: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, **self.extra}


class BodyTooLarge(ServiceError):
    def __init__(self, limit: int, key: str = "limits.max_upload_mb") -> None:
        super().__init__(413, f"upload too large: over {key} ({limit / 1e6:g} MB per request)")
