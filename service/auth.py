"""API keys: stored only as SHA-256 hashes, compared in constant time.

`EASEL_API_KEYS` holds comma-separated `name:sha256hex` entries (make one with
`easel hash-key <key>`).  With `EASEL_AUTH=off` (what `easel up` uses when no keys are set) the
Authorization header is ignored, since the OpenAI SDK always sends one.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from core.errors import OpenAIError


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_key_hashes(spec: str) -> dict[str, str]:
    """`name:hex,name2:hex2` (or bare hex) -> {hex: name}."""
    keys: dict[str, str] = {}
    for i, entry in enumerate(e.strip() for e in spec.split(",") if e.strip()):
        name, _, digest = entry.rpartition(":")
        digest = digest.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"EASEL_API_KEYS entry {i + 1} is not name:sha256-hex")
        keys[digest] = name or f"key{i + 1}"
    return keys


def unauthorized(message: str) -> OpenAIError:
    return OpenAIError(401, message, "invalid_request_error", None, "invalid_api_key")


class KeyChecker:
    def __init__(self, hashes: dict[str, str]) -> None:
        self.hashes = hashes

    def identify(self, authorization: str | None) -> str:
        """The key's name, or a 401 for a missing or unknown key."""
        if not authorization:
            raise unauthorized("You didn't provide an API key. Provide it in an Authorization "
                               "header using Bearer auth (Authorization: Bearer YOUR_KEY).")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("The Authorization header must be 'Bearer YOUR_KEY'.")
        digest = hash_key(token)
        for known, name in self.hashes.items():
            if hmac.compare_digest(known, digest):
                return name
        shown = token[:3] + "*" * 4 + token[-4:] if len(token) > 8 else "****"
        raise unauthorized(f"Incorrect API key provided: {shown}.")


async def require_key(request: Request) -> None:
    """Dependency of every /v1 route: the key's name for quotas, or a 401.

    Attached to the routes themselves rather than decided from the URL: a URL rebuilt from a
    crafted Host header (CVE-2026-48710, Starlette < 1.3.1) once let /v1 requests skip it.
    """
    keys: KeyChecker | None = request.app.state.keys
    if keys is not None:
        request.state.key_name = keys.identify(request.headers.get("authorization"))
