"""Long-running processes: the sequencer worker, the read API, the dev stack and the CLI."""
