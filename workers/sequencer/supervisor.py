"""Keep a sequencer running through outages of its backing services.

`Sequencer.run` ends with an exception when Postgres or Kafka goes away under it (its lock-holding
connection died, a produce timed out, a broker refused the connection). That is the same
situation as a crash at that line, which the design already recovers from (a new epoch, catch-up
of published-but-unprojected events): so the supervisor builds a fresh `Sequencer` and runs it
again, backing off while the service stays down, instead of exiting and waiting for someone to
restart the process.

Only *transient* failures are retried - lost or refused connections and timeouts, and the
infrastructure errors that say so. Anything else (the broker lost its data, a bug) still ends
the process with the error, as before, so it is seen rather than retried in a loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import asyncpg
import asyncpg.exceptions._base
import structlog
from aiokafka.errors import KafkaError

from registry_core import metrics
from registry_core.errors import InfrastructureError
from registry_core.settings import Settings
from workers.sequencer.health import STATUS
from workers.sequencer.worker import Sequencer

log = structlog.get_logger("opsml.sequencer.supervisor")

BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0
# A run that stayed up this long counts as healthy: the next failure starts backing off afresh.
HEALTHY_AFTER_SECONDS = 30.0


def is_transient(exc: BaseException) -> bool:
    """A failure of the connection to Postgres or Kafka, not of the registry's own logic."""
    if isinstance(exc, InfrastructureError):
        return exc.transient  # a service that is down may come back; lost data does not
    if isinstance(exc, (OSError, TimeoutError, KafkaError)):
        return True
    if isinstance(exc, asyncpg.exceptions._base.DataError):
        # asyncpg could not encode a value ("invalid input for query argument $5"): an
        # InterfaceError by class, but the data's fault - a fresh sequencer would meet the same
        # value again (the projection sets such events aside; anything else is a bug to see)
        return False
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError):
        # "connection is closed", "cannot perform operation: another operation is in progress",
        # "cannot switch to state 12; another operation (2) is in progress": the protocol state
        # asyncpg is left in when the socket died mid-query (seen after a Postgres restart
        # during a batch). A fresh sequencer gets a fresh connection.
        return True
    return isinstance(
        exc,
        (
            asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
            asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
            asyncpg.exceptions.InsufficientResourcesError,  # too many connections
        ),
    )


async def supervise(
    settings: Settings,
    stop: asyncio.Event,
    *,
    make: Callable[[Settings], Sequencer] = Sequencer,
    backoff_first: float = BACKOFF_FIRST,
    backoff_max: float = BACKOFF_MAX,
) -> None:
    """Run sequencers one after another until `stop` is set; re-raise non-transient errors."""
    delay = backoff_first
    restarts = 0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        sequencer = make(settings)
        try:
            await sequencer.run(stop)
            return  # `stop` was set (or the standby was told to stop)
        except Exception as exc:
            STATUS.set("starting")  # not ready until a fresh sequencer is active or standby
            if stop.is_set():
                return
            if not is_transient(exc):
                if isinstance(exc, InfrastructureError):  # says what to do: one line for it
                    log.error("the sequencer cannot run", error=str(exc))
                raise
            if sequencer.ready.is_set() or loop.time() - started > HEALTHY_AFTER_SECONDS:
                delay = backoff_first  # it got going again: this is a new outage
            restarts += 1
            metrics.RESTARTS.inc()
            log.warning(
                "sequencer lost a backing service; starting it again",
                error=f"{type(exc).__name__}: {exc}",
                restart=restarts,
                retry_in=round(delay, 2),
            )
        # jitter so that several workers (active and standby) do not retry in lock-step
        try:
            await asyncio.wait_for(stop.wait(), delay * random.uniform(0.8, 1.2))
        except TimeoutError:
            pass
        delay = min(delay * 2, backoff_max)
