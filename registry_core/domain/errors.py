"""Domain errors: one base class, small subclasses, each with a stable code and a helpful message.

The code travels in `CommandRejected.error_code` so a client can re-raise the same class on its
side; the docstring is the default message.
"""

from __future__ import annotations

from typing import ClassVar


class RegistryError(Exception):
    """The registry could not do what was asked."""

    code: ClassVar[str] = "registry_error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidName(RegistryError, ValueError):
    """A space or name is not valid: use 1-64 lowercase letters, digits and '-', starting and
    ending with a letter or digit."""

    code = "invalid_name"


class InvalidCommand(RegistryError, ValueError):
    """The command is malformed: it does not match the RegisterCard schema."""

    code = "invalid_command"


class UnsupportedSchemaVersion(RegistryError):
    """The message was written with a schema version this worker does not know; upgrade the
    worker or the client so that they agree."""

    code = "unsupported_schema_version"


class VersionConflict(RegistryError):
    """That version is already registered for this card name."""

    code = "version_conflict"


class InvalidVersion(RegistryError, ValueError):
    """The version string is not a valid semantic version."""

    code = "invalid_version"


class WrongRegistry(RegistryError, TypeError):
    """The card type does not belong in this registry."""

    code = "wrong_registry"


class CardNotFound(RegistryError, LookupError):
    """No card matches the given uid or filters."""

    code = "card_not_found"


class InvalidArtifact(RegistryError, ValueError):
    """An artifact is not acceptable: a bad path (absolute, `..`, a symlink), too large, or its
    bytes do not match its sha256."""

    code = "invalid_artifact"


class ArtifactTooLarge(InvalidArtifact):
    """The artifact is larger than the registry's limit (OPSML_MAX_ARTIFACT_BYTES)."""

    code = "artifact_too_large"


class ArtifactIntegrityError(RegistryError):
    """Downloaded bytes do not match the sha256 recorded at registration: the stored artifact is
    corrupt or was changed. Do not use it; tell the registry's operators."""

    code = "artifact_integrity"


class InvalidQuery(RegistryError, ValueError):
    """The query is malformed (a filter, a cursor or a version constraint)."""

    code = "invalid_query"


class UnknownReference(RegistryError, LookupError):
    """A lineage reference points at a card that does not exist (or is of the wrong kind)."""

    code = "unknown_reference"


class Unstorable(InvalidCommand):
    """The registry cannot store a value of this command; change the value and send it again."""

    code = "unstorable"


class CardIsDeleted(RegistryError):
    """The card was deleted; its version stays taken, but it can no longer be changed."""

    code = "card_deleted"


class NotDeletable(RegistryError):
    """This kind of card cannot be deleted."""

    code = "not_deletable"


class NameTaken(RegistryError):
    """This card type registers once per space/name, and that name is taken."""

    code = "name_taken"


class AliasNotFound(RegistryError, LookupError):
    """No such alias on this card name (now, or at the moment asked about)."""

    code = "alias_not_found"


class AliasInUse(RegistryError):
    """An alias points at this version: move or remove the alias first."""

    code = "alias_in_use"


class Unauthenticated(RegistryError):
    """No valid API token (or, for a command, no valid signature): this registry requires one."""

    code = "unauthenticated"


class Forbidden(RegistryError):
    """The token is valid but lacks the scope or the space this needs."""

    code = "forbidden"


ERRORS_BY_CODE: dict[str, type[RegistryError]] = {
    cls.code: cls
    for cls in (
        RegistryError,
        InvalidName,
        InvalidCommand,
        Unstorable,
        UnsupportedSchemaVersion,
        VersionConflict,
        InvalidVersion,
        WrongRegistry,
        CardNotFound,
        UnknownReference,
        InvalidArtifact,
        ArtifactTooLarge,
        ArtifactIntegrityError,
        InvalidQuery,
        CardIsDeleted,
        NotDeletable,
        NameTaken,
        Unauthenticated,
        Forbidden,
        AliasNotFound,
        AliasInUse,
    )
}


MAX_REASON = 2000


def printable(text: str) -> str:
    """`text` with what no store can hold written as escapes: U+0000 as `\\u0000`, a lone
    surrogate as `\\udXXX`. Messages quote user input, and a message is stored too."""
    if "\x00" not in text:
        if text.isascii():
            return text
        try:
            text.encode("utf-8")
            return text
        except UnicodeEncodeError:
            pass
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")


def clip(text: object, limit: int = 120) -> str:
    """Echo at most `limit` characters of user input into a message (storable: see
    `printable`)."""
    shown = printable(str(text))
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def summarize_validation(exc: Exception, limit: int = MAX_REASON) -> str:
    """A short, bounded description of a pydantic ValidationError (never the raw input)."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return clip(exc, limit)
    try:
        items = errors(include_input=False, include_url=False)
    except TypeError:  # FastAPI's RequestValidationError.errors() takes no options
        items = errors()
    parts = []
    for err in items[:5]:
        loc = ".".join(clip(p, 40) for p in err.get("loc", ()))
        msg = clip(str(err.get("msg", "")).removeprefix("Value error, "), 300)
        # (a whole-model check names its field itself, in the message)
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(items) - 5
    return clip("; ".join(parts) + (f"; and {more} more" if more > 0 else ""), limit)


def error_from_code(code: str | None, message: str) -> RegistryError:
    """Rebuild a domain error from its wire code (unknown codes fall back to the base class)."""
    return ERRORS_BY_CODE.get(code or "", RegistryError)(message)
