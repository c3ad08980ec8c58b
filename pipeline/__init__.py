"""genguard service: records, stages, HTTP API, CLI and the state they share."""

__version__ = "0.1.0"
