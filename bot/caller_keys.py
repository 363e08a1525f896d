"""The caller key of a call record: which calls came from the same number, without storing the number.

`caller_key(number, secret)` is HMAC-SHA256 of the caller number (normalised: `+86`/`0086` dropped before a mainland
mobile) under a deployment secret, hex, cut to 32 digits (128 bits: no collision among any bank's callers). Only
numbers are keyed: "anonymous", "unknown" or any other text from a door gets "", so unknown callers never match
each other.

What protects the number is the secret alone, so it never sits beside the records. A record also keeps the masked
number (`139****5678`): whoever holds a record *and* the secret can try the 10^4 hidden digits in milliseconds and
read the number back. Without the secret, hashing every phone number finds nothing. So:
- `CALLER_KEY_SECRET` (every gateway of a cluster must share it, so a repeat call that lands on another gateway still
  matches the 智能交互解决率's 24-hour rule, bot/kpis.py) must be at least MIN_TOKEN_CHARS long, the consoles'
  tokens' bar: the gateway refuses to start with a shorter one (bot/web/access.py `require_safe_binding`);
- on a single host with none set, a random key is made once in CALLER_KEY_FILE (default `var/secrets/caller-key`,
  directory 0700, file 0600), never under CALL_RECORDS_DIR: copying, backing up or sharing the records folder does
  not hand out the key.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
import hashlib
import hmac
from pathlib import Path

from bot.web.access import MIN_TOKEN_CHARS
from settings import GatewaySettings

log = logging.getLogger(__name__)

KEY_HEX_DIGITS = 32
NUMBER_RE = re.compile(r"\+?[0-9]{3,20}")
MAINLAND_MOBILE_RE = re.compile(r"(?:\+86|0086|86)(1[0-9]{10})")


class WeakSecret(ValueError):
    """CALLER_KEY_SECRET is set but too short to keep the numbers behind the keys secret."""


def normalized_number(number: str) -> str:
    """The number as keyed: digits with an optional leading +, a mainland mobile without its country code; "" for
    anything that is not a number (anonymous, a SIP user name, garbage)."""
    number = (number or "").strip()
    if not NUMBER_RE.fullmatch(number):
        return ""
    mobile = MAINLAND_MOBILE_RE.fullmatch(number)
    return mobile.group(1) if mobile else number


def caller_key(number: str, secret: bytes) -> str:
    """The key of a caller number (as the door read it); "" for no number or one that is not a number."""
    number = normalized_number(number)
    if not number or not secret:
        return ""
    return hmac.new(secret, number.encode("ascii"), hashlib.sha256).hexdigest()[:KEY_HEX_DIGITS]


def secret_problem(secret: str) -> str | None:
    """Why CALLER_KEY_SECRET cannot be used; None when it can (or is unset: the host key file is used)."""
    if secret and len(secret) < MIN_TOKEN_CHARS:
        return (f"CALLER_KEY_SECRET is shorter than {MIN_TOKEN_CHARS} characters: anyone holding the call records "
                "could guess it and read the callers' numbers back (set a long random one, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    return None


def deployment_secret(gateway: GatewaySettings) -> bytes:
    """CALLER_KEY_SECRET, else this host's key file (created on first use). Raises WeakSecret for a short secret,
    OSError when the file can be neither read nor created or sits under CALL_RECORDS_DIR (the caller decides: the
    voice loop then records no keys rather than failing calls)."""
    problem = secret_problem(gateway.caller_key_secret)
    if problem:
        raise WeakSecret(problem)
    if gateway.caller_key_secret:
        return gateway.caller_key_secret.encode("utf-8")
    if gateway.call_records_db_url.strip():
        log.warning("CALLER_KEY_SECRET is not set while the call records go to a shared database: each gateway "
                    "keys callers with its own secret, so repeat calls across gateways do not match")
    path = Path(gateway.caller_key_file).resolve()
    records = Path(gateway.call_records_dir).resolve()
    if path == records or records in path.parents:
        raise OSError(f"CALLER_KEY_FILE {path} is under CALL_RECORDS_DIR {records}: the key must not travel with "
                      "the records it protects (docs/KPIS.md)")
    return _host_secret(path)


class CallerKeys:
    """The caller keys of one process's call records: the deployment secret read once, at the first call; without
    one (logged once) every key is "": calls go on, only their repeat-call matching is lost."""

    def __init__(self, gateway: GatewaySettings) -> None:
        self._gateway = gateway
        self._secret: bytes | None = None

    def key(self, number: str) -> str:
        if self._secret is None:
            try:
                self._secret = deployment_secret(self._gateway)
            except (OSError, WeakSecret) as error:
                log.error("no caller key secret (%s): call records get no caller_key", error)
                self._secret = b""
        return caller_key(number, self._secret)


def _host_secret(path: Path) -> bytes:
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    _private_folder(path.parent)
    # Written whole under a private name, then linked into place: link fails when the name exists, so two processes
    # starting together keep one key, and neither ever reads a key half written.
    draft = path.with_name(f"{path.name}.{secrets.token_hex(8)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(32) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
    finally:
        draft.unlink(missing_ok=True)
    return _read_key(path)


def _private_folder(folder: Path) -> None:
    """The key's folder, made 0700 (a folder others can list would show them when the key changes)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is open to other users (mode %o): the caller key should sit in a folder only the "
                    "gateway's user can read", folder, mode)


def _read_key(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise OSError(f"{path} can be read by other users (mode {mode:o}): chmod 600 it (or remove it to make a "
                      "new one; repeat calls then stop matching older records)")
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise OSError(f"{path} holds no usable caller key (remove it to make a new one)")
    return key.encode("ascii")
