"""A gateway without the voice layer installed (no pipecat) still starts: the text console, the dashboard and the
trainer need none of it (bot/web/app.py `_voice_loop`)."""

from __future__ import annotations

import subprocess
import sys

from settings import REPO_ROOT

PROGRAM = """
import sys
class NoPipecat:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'pipecat':
            raise ImportError('pipecat is not installed here: ' + name)
sys.meta_path.insert(0, NoPipecat())
from bot.web.app import create_app
from settings import Settings
app = create_app(Settings.from_env({'RASA_URL': 'http://127.0.0.1:9'}))
paths = {route.resource.canonical for route in app.router.routes()}
assert {'/console', '/dashboard', '/api/kpis', '/trainer'} <= paths, paths
assert '/voice' not in paths
print('served without pipecat')
"""


def test_the_gateway_app_is_made_without_pipecat():
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "served without pipecat" in done.stdout
