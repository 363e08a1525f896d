"""PIN hashing: PBKDF2-HMAC-SHA256 with a per-customer random salt, compared in constant time.

A stored hash is one self-describing string `pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`, so the
iteration count can be raised in settings without invalidating PINs hashed earlier.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ALGORITHM = "pbkdf2_sha256"
SALT_BYTES = 16


def hash_pin(pin: str, iterations: int) -> str:
    """A new salted hash of `pin`; the PIN itself is never stored."""
    if iterations < 1:
        raise ValueError("PIN hash iterations must be positive")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _derive(pin, salt, iterations)
    return f"{ALGORITHM}${iterations}${salt.hex()}${digest.hex()}"


def pin_matches(pin: str, stored: str) -> bool:
    """Whether `pin` matches the stored hash; constant-time compare, False for any malformed stored value."""
    try:
        algorithm, iterations, salt_hex, digest_hex = stored.split("$")
        if algorithm != ALGORITHM:
            return False
        expected = bytes.fromhex(digest_hex)
        actual = _derive(pin, bytes.fromhex(salt_hex), int(iterations))
    except (ValueError, AttributeError):
        return False
    return hmac.compare_digest(expected, actual)


def _derive(pin: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode("utf-8"), salt, iterations)
