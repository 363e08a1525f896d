"""The action-server fixtures (a real temporary bank) for the adversarial dialogue tests; .venv-rasa only."""

from tests.actions.conftest import bank_db_url, bank_for_actions, bank_service, bank_settings  # noqa: F401
