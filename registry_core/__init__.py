"""opsml-registry core: domain, wire contracts, persistence and settings shared by every process."""

__version__ = "0.1.0"
