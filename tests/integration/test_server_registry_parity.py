"""Same tests, both modes (issue 17): the registry-level integration cases written for the HTTP
client - registration and the semver rules, queries, updates and deletes, lineage, the domain's
errors, concurrency, a corrupt stored file - run again, unchanged, through the server registry:
the same running stack, its `url` handed to the test being the database's URI. The
transport-level contract (artifacts staged, de-duplicated and downloaded included) runs for both
adapters in test_transport_contract.py; the model round trips are left to the HTTP run, for the
suite's time: they exercise the serialisers, and the files travel the same way."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from client import AsyncCardRegistry
from client.server_transport import ServerTransport
from tests.conftest import Stack
from tests.integration import test_artifacts as artifacts
from tests.integration import test_registration as registration
from tests.integration import test_registry_parity as parity

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class ServerStack(Stack):
    """A running stack as a process inside the perimeter sees it: OPSML_TRACKING_URI is the
    database (the tests build their registries from `url`)."""

    @property
    def url(self) -> str:
        return self.database_url


@pytest.fixture
def server(stack: Stack) -> Stack:
    return ServerStack(**{f.name: getattr(stack, f.name) for f in dataclasses.fields(stack)})


# Each case names its own spaces, so they share one stack (a stack per case would add ~1.5 s
# each to the suite); the update/delete case counts the update and delete events of the whole
# log, and no other case updates or deletes.
CASES = [
    parity.test_semver_rules_table_through_the_whole_stack,
    registration.test_version_types_and_read_your_writes,
    parity.test_8_concurrent_clients_on_one_name_are_gap_and_duplicate_free,
    parity.test_every_card_type_in_its_own_registry,
    parity.test_update_and_delete_are_events_and_versions_are_never_reused,
    parity.test_query_language_through_the_api,
]


async def test_the_registry_cases_through_the_database(server: Stack, tmp_path: Path) -> None:
    probe = AsyncCardRegistry("run", tracking_uri=server.url)
    assert isinstance(probe.transport, ServerTransport)  # no HTTP in these runs
    await probe.close()
    for case in CASES:
        await case(server)  # a failure's traceback names the case
    await artifacts.test_corrupt_stored_file_is_detected_on_load(server, None, tmp_path)
