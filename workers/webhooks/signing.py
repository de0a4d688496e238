"""Webhooks: signing a delivery the Standard Webhooks way, and checking one (for receivers and
tests).

A secret is `whsec_` + base64 of 32 random bytes. The signed content is
`{webhook-id}.{webhook-timestamp}.{body}` (the event id, Unix seconds, the exact body bytes), the
signature `v1,` + base64(HMAC-SHA256(secret bytes, content)). During a rotation both secrets
sign, space-separated in one `webhook-signature` header, so a receiver holding either verifies.
The timestamp is signed so a receiver can refuse old deliveries (replays of captured traffic).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"
# How far a receiver's clock may be from the timestamp (Standard Webhooks' default tolerance).
TOLERANCE_S = 300


class SignatureError(ValueError):
    """The delivery's signature does not verify with the receiver's secret."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    return (
        "v1," + base64.b64encode(hmac.new(_key(secret), content, hashlib.sha256).digest()).decode()
    )


def headers(
    secrets_: Iterable[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every given secret."""
    ts = int(time.time()) if timestamp is None else timestamp
    sigs = " ".join(signature(s, msg_id, ts, body) for s in secrets_)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sigs}


def verify(
    secret: str, got: Mapping[str, str], body: bytes, *, now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> None:  # fmt: skip
    """Raise SignatureError unless one of the delivery's signatures is `secret`'s and its
    timestamp is within the tolerance (what a receiver does before trusting a body)."""
    lower = {k.lower(): v for k, v in got.items()}
    try:
        msg_id, ts = lower["webhook-id"], int(lower["webhook-timestamp"])
        offered = lower["webhook-signature"].split()
    except (KeyError, ValueError):
        raise SignatureError("missing or malformed webhook-* headers") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise SignatureError(f"timestamp {ts} is more than {tolerance_s} s from now")
    expected = signature(secret, msg_id, ts, body)
    if not any(hmac.compare_digest(expected, sig) for sig in offered):
        raise SignatureError("no signature matches the secret")
