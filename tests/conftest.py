"""Fixtures shared across test folders, registered here once by import:

- `dialogue_servers` (a real Rasa + action server, .venv-rasa only), so tests/dialogue and tests/security/rasa share
  one pair of servers per session;
- `stores` (a private PostgreSQL and Redis per session, tests/cluster/conftest.py), so the bank and dialogue tests of
  .venv-rasa run on the cluster's real engines started the same way; tests/cluster's own conftest serves its tests.
"""

from tests.cluster.conftest import stores  # noqa: F401 - a pytest fixture, registered by import
from tests.rasa_servers import dialogue_servers  # noqa: F401 - a pytest fixture, registered by import
