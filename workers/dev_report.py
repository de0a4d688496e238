"""What `opsml dev` prints about its children: the reason a worker or API that keeps exiting
before it is ready stopped the stack (from the end of its log), and the demo registration."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from workers.dev_database import drop_command, host_of

FAILURE_LINES = 15
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt): ")


def early_exit_report(
    role: str, code: int, exits: int, text: str, path: Path, dsn: str, data_dir: Path
) -> str:
    """The message that stops the stack: the child's last log lines from its exception on
    (a traceback ends with the exception's own message, which says what is wrong and what to do;
    the whole log stays in its file), and what to do about a lost event log."""
    tail = [line for line in text.splitlines() if line.strip()]
    raised = [i for i, line in enumerate(tail) if EXCEPTION_LINE.match(line)]
    tail = tail[raised[-1] :] if raised else tail
    tail = tail[-FAILURE_LINES:]
    lines = [
        f"the {role} exited {exits} times in a row before it was ready (last exit"
        f" code {code}); from its log ({path}):",
        *(f"    {line}" for line in tail),
    ]
    if "the broker lost its data" in text:
        lines.append(
            f"The database ({host_of(dsn)}) holds a registry whose events are not in"
            f" the event log of {data_dir} (its s3/ directory lost or replaced). To keep"
            " that registry, restore the directory from a backup; to start afresh, pass"
            f" --database-url with a new database, or drop this one:"
            f" {drop_command(dsn, urlsplit(dsn).path.lstrip('/'))}"
        )
    else:
        lines.append("Fix the cause above and start opsml dev again.")
    return "\n".join(lines)


async def register_demo(tracking_uri: str) -> str:
    """`opsml dev --demo`: one RunCard registered through the client, as a user would."""
    from client import AsyncCardRegistry, RunCard

    async with AsyncCardRegistry("run", tracking_uri=tracking_uri) as reg:
        card = await reg.register_card(
            RunCard(
                space="demo",
                name="churn",
                tags={"source": "opsml dev --demo"},
                parameters={"learning_rate": 0.1},
            )
        )
    return f"registered demo RunCard demo/churn version {card.version} (uid {card.uid})"
