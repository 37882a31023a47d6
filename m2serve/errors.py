"""Error types. Each maps to an HTTP status and an OpenAI-shaped error body at the API edge."""
from __future__ import annotations


class M2ServeError(Exception):
    status_code = 500
    error_type = "InternalServerError"

    def to_openai(self, param: str | None = None) -> dict:
        return {"error": {"message": str(self), "type": self.error_type, "param": param, "code": self.status_code}}


class ConfigError(M2ServeError, ValueError):
    """A model folder, config.json or engine option that m2serve cannot run."""
    status_code = 400
    error_type = "BadRequestError"


class CheckpointError(M2ServeError, ValueError):
    """A missing, unexpected or mis-shaped tensor; the message names it."""


class InvalidRequestError(M2ServeError, ValueError):
    """A request that is refused before it is queued (HTTP 400)."""
    status_code = 400
    error_type = "BadRequestError"


class EngineDeadError(M2ServeError, RuntimeError):
    status_code = 503
    error_type = "ServiceUnavailableError"
