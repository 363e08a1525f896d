"""SIP call ids are globally unique and unguessable, never a per-process counter.

Reproduction from issue 7: ids were `sip-1`, `sip-2`… from a counter, so after a gateway restart call N reused the
old `sip-N` conversation in Rasa. The restart test runs two fresh interpreters, as a restarted gateway would.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

from settings import REPO_ROOT, SipSettings
from telephony.sip.uas import CallRefused, IncomingCall, UserAgent
from tests.telephony.sip.sip_test_support import CALLER, LOCAL, Uac, events

CALL_ID_RE = re.compile(r"^sip-[0-9a-f]{32}$")

FIRST_CALL_OF_A_PROCESS = """
from settings import SipSettings
from telephony.sip.uas import IncomingCall, UserAgent
from tests.telephony.sip.sip_test_support import CALLER, LOCAL, Uac
out = UserAgent(SipSettings(), LOCAL).feed(Uac().invite(), CALLER, 0.0)
print([o.call.id for o in out if isinstance(o, IncomingCall)][0])
"""


def first_call_id_after_a_start() -> str:
    done = subprocess.run([sys.executable, "-c", FIRST_CALL_OF_A_PROCESS], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_a_restarted_gateway_never_reuses_a_call_id():
    before, after = first_call_id_after_a_start(), first_call_id_after_a_start()
    assert CALL_ID_RE.match(before) and CALL_ID_RE.match(after)
    assert before != after


def test_call_ids_are_random_not_the_peers_call_id_and_not_sequential():
    ua = UserAgent(dataclasses.replace(SipSettings(), max_calls=100), LOCAL)
    uacs = [Uac() for _ in range(50)]
    calls = [events(ua.feed(uac.invite(), CALLER, 0.0), IncomingCall)[0].call for uac in uacs]
    ids = [call.id for call in calls]
    assert len(set(ids)) == len(ids) and all(CALL_ID_RE.match(call_id) for call_id in ids)
    for uac, call in zip(uacs, calls):
        assert call.sip_call_id == uac.call_id and uac.call_id not in call.id  # the peer's id is a reference only


def test_a_peer_that_reuses_a_call_id_gets_a_new_conversation():
    """Two INVITEs with one Call-ID (a replay, or a peer restarting its counter) are two conversations."""
    ua = UserAgent(SipSettings(), LOCAL)
    first, second = Uac(), Uac()
    second.call_id, second.from_tag = first.call_id, first.from_tag + "x"
    call_a = events(ua.feed(first.invite(), CALLER, 0.0), IncomingCall)[0].call
    call_b = events(ua.feed(second.invite(), CALLER, 0.0), IncomingCall)[0].call
    assert call_a.id != call_b.id


def test_refused_invites_get_random_ids_too():
    ua = UserAgent(dataclasses.replace(SipSettings(), max_calls=0), LOCAL)
    refused = [events(ua.feed(Uac().invite(), CALLER, 0.0), CallRefused)[0] for _ in range(3)]
    assert len({r.id for r in refused}) == 3 and all(CALL_ID_RE.match(r.id) for r in refused)
