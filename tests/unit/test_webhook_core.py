"""Webhooks, the pure parts: Standard Webhooks signatures (the spec's own test vector, rotation
with two secrets, tampering, stale timestamps), the SSRF guard's verdicts on addresses and URLs,
the backoff's growth, cap and jitter, and the endpoint filters."""

from __future__ import annotations

import asyncio
import ipaddress
import random

import pytest

from workers.webhooks import signing, ssrf
from workers.webhooks.endpoints import WebhookError, checked, event_types
from workers.webhooks.fanout import body_of
from workers.webhooks.policy import Backoff, Filters

# The example of the Standard Webhooks specification (and its reference libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_standard_webhooks_example() -> None:
    assert signing.signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIG
    got = signing.headers([SPEC_SECRET], SPEC_ID, SPEC_BODY, timestamp=SPEC_TS)
    assert got == {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS),
                   "webhook-signature": SPEC_SIG}  # fmt: skip
    signing.verify(SPEC_SECRET, got, SPEC_BODY, now=SPEC_TS + 10)


def test_rotation_signs_with_both_secrets_and_either_verifies() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    assert old != new and old.startswith("whsec_")
    body = b'{"type":"card_registered"}'
    got = signing.headers([new, old], "e1", body)
    assert len(got["webhook-signature"].split()) == 2
    signing.verify(new, got, body)
    signing.verify(old, got, body)
    with pytest.raises(signing.SignatureError, match="no signature"):
        signing.verify(signing.new_secret(), got, body)


def test_tampered_body_id_or_stale_timestamp_fail() -> None:
    s = signing.new_secret()
    got = signing.headers([s], "e1", b"{}", timestamp=1_000_000)
    with pytest.raises(signing.SignatureError):
        signing.verify(s, got, b"{ }", now=1_000_000)
    with pytest.raises(signing.SignatureError):
        signing.verify(s, {**got, "webhook-id": "e2"}, b"{}", now=1_000_000)
    with pytest.raises(signing.SignatureError, match="from now"):
        signing.verify(s, got, b"{}", now=1_000_000 + 301)
    with pytest.raises(signing.SignatureError, match="missing"):
        signing.verify(s, {"webhook-id": "e1"}, b"{}")


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
     "255.255.255.255"],
)  # fmt: skip
async def test_non_public_addresses_are_refused_unless_allowed(address: str) -> None:
    assert not ssrf.is_public(ipaddress.ip_address(address))
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(ssrf.UnsafeEndpoint, match="OPSML_WEBHOOK_ALLOW_PRIVATE"):
        await ssrf.check(f"http://{host}:8080/hook", allow_private=False)
    await ssrf.check(f"http://{host}:8080/hook", allow_private=True)


async def test_localhost_by_name_is_refused_after_resolving() -> None:
    with pytest.raises(ssrf.UnsafeEndpoint, match="resolves to"):
        await ssrf.check("http://localhost:9/x", allow_private=False)


def test_public_addresses_pass() -> None:
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert ssrf.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://user:pw@example.com/", "credentials"),
        ("http:///path", "no host"),
        ("http://example.com:99999/", "port"),
        ("http://exa mple.com/", "whitespace"),
        ("https://example.com/" + "a" * 3000, "longer than"),
    ],
)
def test_malformed_urls_are_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(ssrf.UnsafeEndpoint, match=why):
        ssrf.parse(url)


def test_target_keeps_path_and_query_and_default_ports() -> None:
    t = ssrf.parse("https://Hooks.Example.com/a/b?x=1#frag")
    assert (t.scheme, t.host, t.port, t.path) == ("https", "hooks.example.com", 443, "/a/b?x=1")
    assert ssrf.parse("http://example.com").path == "/"


def test_backoff_doubles_is_capped_and_jittered() -> None:
    b = Backoff(base_s=1.0, max_s=10.0, jitter=0.5, max_attempts=4)
    rng = random.Random(7)
    delays = [[b.delay(n, rng) for _ in range(200)] for n in (1, 2, 3, 4, 8)]
    for n, got in zip((1, 2, 3, 4, 8), delays, strict=True):
        raw = min(10.0, 2 ** (n - 1))
        assert all(raw * 0.5 <= d <= raw for d in got)
        assert max(got) - min(got) > raw * 0.3  # spread, not lock-step
    assert not b.exhausted(3) and b.exhausted(4)


CARD = {"type": "card_registered", "card": {"registry": "model", "space": "team-a",
                                            "name": "churn"}}  # fmt: skip


@pytest.mark.parametrize(
    ("filters", "event", "wanted"),
    [
        (Filters(), CARD, True),
        (Filters(), {"type": "sequencer_started"}, False),
        (Filters(event_types=("card_updated",)), CARD, False),
        (Filters(event_types=("card_registered",), registry="model"), CARD, True),
        (Filters(space="team-*"), CARD, True),
        (Filters(space="team-b"), CARD, False),
        (Filters(name="ch?rn"), CARD, True),
        (Filters(alias="prod"), CARD, False),  # no alias field: not an alias event
        (Filters(alias="prod"), {"type": "alias_set", "name": "churn", "alias": "prod"}, True),
        (Filters(registry="model"), {"type": "command_rejected", "registry": "model"}, True),
        (Filters(registry="model"), {"type": "command_rejected", "registry": None}, False),
    ],
)
def test_filters(filters: Filters, event: dict[str, object], wanted: bool) -> None:
    assert filters.matches(event) is wanted


async def test_registration_checks_types_and_patterns() -> None:
    base = {"url": "http://127.0.0.1:9/h", "event_types": [], "registry": None, "space": None,
            "name": None, "alias": None}  # fmt: skip
    assert "card_registered" in event_types() and "sequencer_started" not in event_types()
    await checked(dict(base, space="team-*"), allow_private=True)
    with pytest.raises(WebhookError, match="unknown type 'card_made'"):
        await checked(dict(base, event_types=["card_made"]), allow_private=True)
    with pytest.raises(WebhookError, match="space: 'Team A'"):
        await checked(dict(base, space="Team A"), allow_private=True)
    with pytest.raises(WebhookError, match=r"url: .*ALLOW_PRIVATE"):
        await checked(base, allow_private=False)


def test_body_is_the_event_under_data_with_type_time_and_offset() -> None:
    data = {"type": "card_registered", "occurred_at": "2026-01-01T00:00:00Z", "event_id": "x"}
    import orjson

    assert orjson.loads(body_of(42, data)) == {
        "type": "card_registered", "timestamp": "2026-01-01T00:00:00Z", "offset": 42,
        "data": data,
    }  # fmt: skip


async def test_an_unexpected_error_or_a_hanging_lookup_is_a_failed_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever goes wrong in one attempt is recorded as that attempt's failure (it is retried,
    then dead-lettered): it never escapes to stop the delivery process, and a name lookup that
    hangs is bounded by the attempt's timeout."""
    from workers.webhooks import sender as sender_module
    from workers.webhooks.sender import Sender

    s = Sender(timeout_s=0.2, max_response_bytes=10, allow_private=True)
    try:

        async def boom(*args: object, **kwargs: object) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(s.client, "send", boom)
        got = await s.send("http://127.0.0.1:9/x", {}, b"{}")
        assert (got.code, got.error) == (None, "RuntimeError: boom")

        async def hang(*args: object, **kwargs: object) -> None:
            await asyncio.sleep(5)

        monkeypatch.setattr(sender_module.ssrf, "resolve", hang)
        got = await s.send("http://hooks.test/x", {}, b"{}")
        assert got.error == "no complete answer within 0.2 s" and got.latency_ms < 1000
    finally:
        await s.aclose()
