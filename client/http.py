"""The registry's HTTP API as the client calls it: one lean httpx client, retries of what is safe
to retry (`client/retry.py`), and error answers turned into the domain's error classes."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit
from uuid import UUID

import httpx

from client import retry
from client.errors import RegistryUnavailable
from client.server_uri import UnsupportedTrackingUri, kind_of, shown
from registry_core.domain.errors import CardNotFound, RegistryError, error_from_code

# httpcore runs `import sniffio` several times per request (to tell asyncio from trio); when
# sniffio is not installed (recent anyio no longer needs it) every one of those imports fails
# and searches the whole sys.path again: ~0.3 ms of CPU per request. Record the absence once,
# as a failed import would if Python cached it (`import sniffio` then raises ImportError at
# once, which is what httpcore expects).
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]


class _Cookies(httpx.Cookies):
    """httpx parses every response for cookies (building urllib request/response adapters);
    only a response that sets one needs it. The registry sets none."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class _HttpClient(httpx.AsyncClient):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cookies = self._cookies  # through the setter below: a _Cookies jar

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: httpx._types.CookieTypes) -> None:
        self._cookies = _Cookies(cookies)


def split_token(uri: str) -> tuple[str, str | None]:
    """(the URI without user info, the token in it if any): a token may ride in the URI
    (https://<token>@host), but the URI is shown in messages, so it travels as a header.
    Only an http(s) URI is read this way: a database URI's user is never taken as a token."""
    if kind_of(uri) != "http":
        raise UnsupportedTrackingUri(
            f"{shown(uri)!r} is a database URI, not an OpsML server's API: open it as a server"
            " registry (CardRegistry/AsyncCardRegistry with this OPSML_TRACKING_URI)"
        )
    parts = urlsplit(uri.rstrip("/"))
    if "@" not in parts.netloc:
        return urlunsplit(parts), None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user or password) or None


def error_for(resp: httpx.Response) -> RegistryError:
    """The domain error an error answer stands for (its `error_code`, or the status)."""
    try:
        body = resp.json()
    except ValueError:
        body = {"detail": resp.text}
    if not isinstance(body, dict):
        body = {"detail": body}
    detail = body.get("detail")
    if isinstance(detail, list):  # FastAPI validation errors
        detail = "; ".join(
            f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}"
            for d in detail
            if isinstance(d, dict)
        )
    if resp.status_code == 404 and not body.get("error_code"):
        return CardNotFound(str(detail))
    if resp.status_code >= 500:
        return RegistryUnavailable(f"registry error {resp.status_code}: {detail}")
    return error_from_code(body.get("error_code"), str(detail))


class HttpApi:
    """Requests to one registry API; `request` answers a response below 400 or raises."""

    def __init__(self, base_url: str, headers: dict[str, str] | None, timeout: float) -> None:
        self.base_url = base_url
        self.http: httpx.AsyncClient = _HttpClient(
            base_url=base_url, timeout=timeout, headers=headers
        )

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.request("GET", path, params=params)

    async def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {}
        if params:
            kwargs["params"] = {
                k: (str(v) if isinstance(v, UUID) else v)
                for k, v in params.items()
                if v is not None
            }
        if json is not None:
            kwargs["json"] = json
        try:
            resp = await retry.send(self.http, method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        if resp.status_code >= 400:
            raise error_for(resp)
        return resp

    def unreachable(self, exc: Exception) -> RegistryUnavailable:
        return RegistryUnavailable(
            f"cannot reach the registry at {self.base_url} ({exc.__class__.__name__}:"
            f" {exc}); is OPSML_TRACKING_URI right and the server (e.g. `opsml dev`) running?"
        )

    async def aclose(self) -> None:
        await self.http.aclose()
