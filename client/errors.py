"""Client-side errors. Domain errors coming back from the sequencer are re-raised as the same
classes (see registry_core.domain.errors); these cover the client's own failures."""

from __future__ import annotations

from registry_core.domain.errors import RegistryError


class RegistryUnavailable(RegistryError):
    """The registry could not be reached: check OPSML_TRACKING_URI and that the server is up."""

    code = "registry_unavailable"


class RegistrationTimeout(RegistryError):
    """The command was published but no outcome arrived in time; it may still be applied.
    Retrying with the same command_id is safe."""

    code = "registration_timeout"


class AlreadyRegistered(RegistryError):
    """This card object is already registered (it has a uid); create a new card for a new
    version."""

    code = "already_registered"
