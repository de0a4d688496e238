"""Access control, the pure part: tokens, scopes, and the grants that sign Kafka commands.

Tokens: `opsml_<id>_<secret>`. The id is public (it names the token in lists and logs); the
secret is 256 random bits and only its sha256 is stored. A fast hash is the right one here: slow
hashes (bcrypt, argon2) protect low-entropy passwords from guessing, and a 256-bit secret cannot
be guessed; comparison is constant-time.

Scopes: `read` < `write` < `admin` (each includes the ones before it). `write` and `admin` apply
to the token's spaces only (`*` = every space); `read` covers the whole registry.

Grants: clients publish commands straight to Kafka, where the API cannot see them, so the API
hands an authenticated client a *grant* (its token id, scopes, spaces and expiry, signed with the
server's `OPSML_GRANT_KEY`) plus a signing key derived from that grant. The client signs each
command's bytes with the derived key and sends grant and signature as Kafka headers; the worker
re-derives the key, checks both signatures, the scope, the space, the expiry and that the token
is not revoked. The commands topic thus holds no reusable credential: a signature covers one
command's exact bytes, and a command replayed as-is is de-duplicated by its command_id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import orjson

from registry_core.domain.errors import Forbidden, Unauthenticated

TOKEN_PREFIX = "opsml_"
TOKEN_RE = re.compile(r"opsml_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
GRANT_HEADER = "opsml-grant"
SIGNATURE_HEADER = "opsml-signature"
ALL_SPACES = "*"
GRANT_TTL = timedelta(hours=1)
CLOCK_SKEW = timedelta(minutes=5)


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


RANK = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    out = set()
    for v in values:
        try:
            out.add(Scope(v.strip().lower()))
        except ValueError:
            raise ValueError(f"unknown scope {v!r}: use read, write or admin") from None
    if not out:
        raise ValueError("a token needs at least one scope (read, write or admin)")
    return frozenset(out)


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token's id, name, scopes and writable spaces."""

    token_id: str
    name: str
    scopes: frozenset[Scope]
    spaces: frozenset[str]

    def has(self, scope: Scope) -> bool:
        return any(RANK[s] >= RANK[scope] for s in self.scopes)

    def may_write(self, space: str, scope: Scope = Scope.WRITE) -> bool:
        return self.has(scope) and (ALL_SPACES in self.spaces or space in self.spaces)

    def require(self, scope: Scope, space: str | None = None) -> None:
        if not self.has(scope):
            raise Forbidden(f"token {self.token_id} ({self.name}) lacks the {scope} scope")
        if space is not None and not self.may_write(space, scope):
            raise Forbidden(
                f"token {self.token_id} ({self.name}) may not write to space {space!r}"
                f" (it may write to: {', '.join(sorted(self.spaces)) or 'no space'})"
            )


# ---- tokens ---------------------------------------------------------------------------------


def new_token() -> tuple[str, str]:
    """A fresh token: (token_id, full token). Show the full token once; store `hash_secret`."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)  # 43 characters
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secret}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    """(token_id, secret) of a well-formed token, else Unauthenticated (never echoing it)."""
    m = TOKEN_RE.fullmatch(token.strip())
    if not m:
        raise Unauthenticated("the token is malformed: expected opsml_<id>_<secret>")
    return m.group(1), m.group(2)


def secret_matches(secret: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_sha256)


def redact_tokens(text: str) -> str:
    """Replace the secret part of any token in `text` (for logs and error messages)."""
    return TOKEN_RE.sub(lambda m: f"opsml_{m.group(1)}_[redacted]", text)


# ---- grants ---------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b".".join(parts), hashlib.sha256).digest()


@dataclass(frozen=True)
class Grant:
    grant: str  # public: payload.signature
    signing_key: str  # secret: hex, derived from the grant and the server key
    expires_at: datetime


def issue_grant(key: bytes, who: Principal, now: datetime, ttl: timedelta = GRANT_TTL) -> Grant:
    expires = now + ttl
    payload = _b64(
        orjson.dumps(
            {
                "tid": who.token_id,
                "name": who.name,
                "scopes": sorted(who.scopes),
                "spaces": sorted(who.spaces),
                "exp": int(expires.timestamp()),
            }
        )
    )
    grant = f"{payload}.{_b64(_mac(key, b'grant', payload.encode()))}"
    return Grant(grant, _mac(key, b"sign", grant.encode()).hex(), expires)


def sign(signing_key: str, value: bytes) -> str:
    return hmac.new(bytes.fromhex(signing_key), value, hashlib.sha256).hexdigest()


def command_headers(grant: Grant, value: bytes) -> list[tuple[str, bytes]]:
    return [
        (GRANT_HEADER, grant.grant.encode()),
        (SIGNATURE_HEADER, sign(grant.signing_key, value).encode()),
    ]


@dataclass(frozen=True)
class VerifiedGrant:
    principal: Principal
    expires_at: datetime


def verify_command(
    key: bytes,
    headers: Sequence[tuple[str, bytes]] | None,
    value: bytes | None,
    issued_at: datetime | None,
    now: datetime,
) -> VerifiedGrant:
    """Check a command's grant and signature; raise Unauthenticated/Forbidden with the reason.

    Expiry is checked against the command's own (signed) `issued_at`, so commands published
    while the grant was valid are still accepted after a worker outage; `issued_at` may not lie
    in the future beyond a small clock skew. Revocation is checked by the caller (database)."""
    found = {k: v for k, v in headers or ()}
    grant_raw, sig_raw = found.get(GRANT_HEADER), found.get(SIGNATURE_HEADER)
    if not grant_raw or not sig_raw:
        raise Unauthenticated(
            "the command is not signed: this registry requires an API token (set it in"
            " OPSML_TRACKING_URI as https://<token>@host, or OPSML_TOKEN)"
        )
    try:
        grant = grant_raw.decode("ascii")
        payload, _, mac = grant.partition(".")
        ok = hmac.compare_digest(_unb64(mac), _mac(key, b"grant", payload.encode()))
    except (UnicodeDecodeError, ValueError):
        ok = False
    if not ok:
        raise Unauthenticated("the command's grant is not valid (not issued by this registry)")
    signing_key = _mac(key, b"sign", grant.encode())
    expected = hmac.new(signing_key, value or b"", hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, sig_raw.strip()):
        raise Unauthenticated("the command's signature does not match its content")
    claims = orjson.loads(_unb64(payload))
    expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
    when = issued_at or now
    if when > now + CLOCK_SKEW:
        raise Unauthenticated("the command claims to be issued in the future")
    if when > expires:
        raise Unauthenticated("the command's grant had expired when it was issued")
    who = Principal(
        token_id=str(claims["tid"]),
        name=str(claims.get("name", "")),
        scopes=parse_scopes(claims["scopes"]),
        spaces=frozenset(claims["spaces"]),
    )
    return VerifiedGrant(who, expires)
