"""Which registry a tracking URI names: an OpsML server's HTTP API (a client registry) or the
registry's own Postgres database (a server registry, client/server_transport.py). Anything else
is refused here, naming what is supported, before a connection is tried."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from registry_core.domain.errors import RegistryError

HTTP_SCHEMES = ("http", "https")
SERVER_SCHEMES = ("postgresql", "postgres")
Kind = Literal["http", "server"]


class UnsupportedTrackingUri(RegistryError, ValueError):
    """OPSML_TRACKING_URI must be an http(s) URI of a registry's API or a postgresql:// URI of
    its database."""

    code = "unsupported_tracking_uri"


def shown(uri: str) -> str:
    """The URI without its user info (a token or a database password), fit for a message."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "the given URI"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


def kind_of(uri: str) -> Kind:
    """ "http" for http(s)://, "server" for postgresql:// and postgres://; else
    UnsupportedTrackingUri (the message never repeats user info)."""
    try:
        scheme = urlsplit(uri.strip()).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme in HTTP_SCHEMES:
        return "http"
    if scheme in SERVER_SCHEMES:
        return "server"
    what = f"the scheme {scheme!r}" if scheme else "no scheme"
    raise UnsupportedTrackingUri(
        f"OPSML_TRACKING_URI {shown(uri)!r} has {what}; supported are http:// or https:// (an"
        " OpsML server's API, e.g. https://<token>@registry.example.internal: a client"
        " registry) and postgresql:// or postgres:// (the registry's own database, e.g."
        " postgresql://user:password@db-host:5432/opsml: a server registry)"
    )
