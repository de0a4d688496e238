"""Importable helpers for tests (e.g. model classes that must be importable to be rebuilt)."""
