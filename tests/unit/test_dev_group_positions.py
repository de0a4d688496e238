"""Subscriber positions across restarts of `opsml dev`'s in-memory broker: read from a real Tansu
through one long-lived client, written to the data directory, committed again at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from registry_core.messaging import GroupPositions, commit_positions, ensure_topics
from workers import dev


async def test_positions_committed_are_read_back_for_the_one_topic(kafka: str) -> None:
    await ensure_topics(kafka, ["ev", "other"])
    await commit_positions(kafka, "ev", {"g1": 3, "g2": 7})
    await commit_positions(kafka, "other", {"elsewhere": 5})  # no position in "ev"
    groups = GroupPositions(kafka, "ev")
    try:
        assert await groups.read() == {"g1": 3, "g2": 7}
        await commit_positions(kafka, "ev", {"g1": 4})
        assert await groups.read() == {"g1": 4, "g2": 7}  # the same client, read again
        assert groups.tp == TopicPartition("ev", 0)
    finally:
        await groups.close()


async def test_the_stack_saves_positions_when_they_change_and_keeps_gone_groups(
    kafka: str, tmp_path: Path
) -> None:
    await ensure_topics(kafka, ["ev"])
    stack = dev.DevStack(data_dir=tmp_path)
    stack.groups = GroupPositions(kafka, "ev")
    stack.groups_saved = {"old": 2}  # restored at start; no longer on this broker
    path = tmp_path / dev.GROUP_OFFSETS_FILE
    try:
        await stack.save_group_positions()
        assert not path.exists()  # nothing new: nothing written
        await commit_positions(kafka, "ev", {"g": 9})
        await stack.save_group_positions()
        assert json.loads(path.read_text()) == {"g": 9, "old": 2}
        assert stack._saved_positions() == {"g": 9, "old": 2}
    finally:
        await stack.close_groups()
    assert stack.groups is None


def test_a_damaged_positions_file_stops_the_start_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / dev.GROUP_OFFSETS_FILE).write_text('{"g": "not a number"')
    with pytest.raises(dev.DevStackError, match="delete it"):
        dev.DevStack(data_dir=tmp_path)._saved_positions()
