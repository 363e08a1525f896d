"""Fixtures shared across test folders. `dialogue_servers` (a real Rasa + action server, .venv-rasa only) is
registered here, once, so tests/dialogue and tests/security/rasa share one pair of servers per session."""

from tests.rasa_servers import dialogue_servers  # noqa: F401 - a pytest fixture, registered by import
