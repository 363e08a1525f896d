"""Prepares the bank store and names the call on every log line when the action server starts.

rasa_sdk imports every module of the `actions` package at start-up, so this runs once per action-server process.
Without it the store would be created at the first action, and the gateway's /healthz (which never creates a
missing database) would report the bank store down until the first call. A store that is down is logged and
retried lazily by the first action; the server still starts. Hooks are installed first, so even that line
follows the logging convention (actions/log_context.py).
"""

from __future__ import annotations

import logging

from actions.common import bank_service
from actions.log_context import install_on_action_server

log = logging.getLogger(__name__)

install_on_action_server()
if not bank_service().prepare():
    log.error("bank store not ready at start-up; actions will retry on first use")
