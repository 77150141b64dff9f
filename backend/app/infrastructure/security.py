"""API-key primitives: generation, keyed hashing and constant-time comparison."""

import hashlib
import hmac
import secrets

KEY_PREFIX = "sk_"
DISPLAY_PREFIX_LENGTH = 10


def generate_api_key() -> str:
    """A high-entropy key (256 bits), so a keyed hash without stretching is enough to store it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str, secret: str) -> str:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LENGTH]


def matches_any(presented: str, known: list[str]) -> str | None:
    """The known key equal to `presented`, compared in constant time against every candidate."""
    found = None
    for candidate in known:
        # No early exit: the time taken must not reveal which key, or how much of one, matched.
        if hmac.compare_digest(presented.encode(), candidate.encode()):
            found = candidate
    return found


def fingerprint(key: str) -> str:
    """A stable, non-reversible id for a settings key, used in history and logs."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]
