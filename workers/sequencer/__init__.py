"""The single sequencer: consumes opsml.commands, decides, publishes events, projects them."""

from workers.sequencer.worker import Sequencer

__all__ = ["Sequencer"]
