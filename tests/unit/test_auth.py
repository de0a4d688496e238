"""The pure part of access control: tokens, scopes, grants and command signatures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from registry_core.auth import (
    GRANT_HEADER,
    SIGNATURE_HEADER,
    Principal,
    Scope,
    command_headers,
    hash_secret,
    issue_grant,
    new_token,
    parse_scopes,
    redact_tokens,
    secret_matches,
    split_token,
    verify_command,
)
from registry_core.domain.errors import Forbidden, Unauthenticated
from registry_core.settings import Settings

KEY = b"k" * 32
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
WRITER = Principal("0123456789ab", "ci", frozenset({Scope.WRITE}), frozenset({"team-a"}))


def test_tokens_are_random_well_formed_and_only_their_hash_matches() -> None:
    a_id, a = new_token()
    b_id, b = new_token()
    assert a != b and a_id != b_id
    token_id, secret = split_token(a)
    assert token_id == a_id and len(secret) == 43
    stored = hash_secret(secret)
    assert secret not in stored
    assert secret_matches(secret, stored)
    assert not secret_matches(split_token(b)[1], stored)


@pytest.mark.parametrize("bad", ["", "opsml_", "Bearer x", "opsml_zz_" + "a" * 43, "x" * 500])
def test_malformed_tokens_are_unauthenticated_and_not_echoed(bad: str) -> None:
    with pytest.raises(Unauthenticated) as err:
        split_token(bad)
    if len(bad) > 8:
        assert bad not in str(err.value)


def test_scopes_nest_and_spaces_bound_writes() -> None:
    admin_all = Principal("a" * 12, "root", frozenset({Scope.ADMIN}), frozenset({"*"}))
    reader = Principal("b" * 12, "ro", frozenset({Scope.READ}), frozenset({"*"}))
    assert admin_all.has(Scope.READ) and admin_all.has(Scope.WRITE)
    assert admin_all.may_write("anything", Scope.ADMIN)
    assert WRITER.has(Scope.READ) and not WRITER.has(Scope.ADMIN)
    assert WRITER.may_write("team-a") and not WRITER.may_write("team-b")
    assert not reader.may_write("team-a")
    with pytest.raises(Forbidden, match="team-b"):
        WRITER.require(Scope.WRITE, "team-b")
    with pytest.raises(Forbidden, match="admin"):
        WRITER.require(Scope.ADMIN, "team-a")
    with pytest.raises(ValueError, match="unknown scope"):
        parse_scopes(["root"])


def test_a_signed_command_verifies_and_carries_the_principal() -> None:
    grant = issue_grant(KEY, WRITER, NOW)
    value = b'{"type":"register_card"}'
    got = verify_command(KEY, command_headers(grant, value), value, NOW, NOW)
    assert got.principal == WRITER
    assert got.expires_at == NOW + timedelta(hours=1)


def test_tampering_in_any_part_is_refused() -> None:
    grant = issue_grant(KEY, WRITER, NOW)
    value = b'{"space":"team-a"}'
    headers = dict(command_headers(grant, value))
    cases = {
        "missing headers": [],
        "other bytes": list(command_headers(grant, b'{"space":"team-b"}')),
        "other key": list(command_headers(issue_grant(b"x" * 32, WRITER, NOW), value)),
        "widened grant": [
            # a grant payload for every space, with the original grant's signature
            (GRANT_HEADER, _widened(grant.grant)),
            (SIGNATURE_HEADER, headers[SIGNATURE_HEADER]),
        ],
        "garbage": [(GRANT_HEADER, b"\xff\x00"), (SIGNATURE_HEADER, b"zz")],
    }
    for case, hdrs in cases.items():
        with pytest.raises(Unauthenticated):
            verify_command(KEY, hdrs, value, NOW, NOW)
            pytest.fail(case)


def _widened(grant: str) -> bytes:
    import base64

    import orjson

    payload, _, sig = grant.partition(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["spaces"] = ["*"]
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"{forged}.{sig}".encode()


def test_expiry_is_judged_by_the_signed_issue_time() -> None:
    grant = issue_grant(KEY, WRITER, NOW, ttl=timedelta(minutes=10))
    value = b"{}"
    hdrs = command_headers(grant, value)
    later = NOW + timedelta(hours=5)  # e.g. the worker was down for hours
    verify_command(KEY, hdrs, value, NOW + timedelta(minutes=9), later)  # issued in time: ok
    with pytest.raises(Unauthenticated, match="expired"):
        verify_command(KEY, hdrs, value, NOW + timedelta(minutes=11), later)
    with pytest.raises(Unauthenticated, match="future"):
        verify_command(KEY, hdrs, value, NOW + timedelta(hours=1), NOW)


def test_redaction_hides_secrets_but_keeps_the_token_id() -> None:
    token_id, token = new_token()
    text = redact_tokens(f"Authorization: Bearer {token} and again {token}")
    assert split_token(token)[1] not in text
    assert text.count(f"opsml_{token_id}_[redacted]") == 2


@pytest.mark.parametrize(
    ("env", "host", "required"),
    [
        ({}, "127.0.0.1", False),  # the dev stack: open on loopback
        ({}, None, False),
        ({"grant_key": "k" * 32}, "127.0.0.1", True),
        ({"grant_key": "k" * 32}, "0.0.0.0", True),
        ({"grant_key": "k" * 32}, None, True),  # the worker follows the key
        ({"auth": "off"}, "::1", False),
    ],
)
def test_when_access_control_is_on(env: dict[str, str], host: str | None, required: bool) -> None:
    assert Settings(**env).auth_required(host) is required


@pytest.mark.parametrize(
    ("env", "host", "message"),
    [
        ({}, "0.0.0.0", "OPSML_GRANT_KEY"),  # production bind without a key: refuse
        ({"auth": "off"}, "10.0.0.5", "only on loopback"),
        ({"auth": "tokens"}, None, "OPSML_GRANT_KEY"),
        ({"grant_key": "short"}, "127.0.0.1", "at least 32"),
    ],
)
def test_unsafe_configurations_refuse_to_start(
    env: dict[str, str], host: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**env).auth_required(host)
