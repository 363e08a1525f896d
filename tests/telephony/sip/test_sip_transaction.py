"""RFC 3261 §17 transactions in isolation: states and timers with a fake clock."""

from __future__ import annotations

from sip_test_support import CALLER, Uac
from telephony.sip.message import build_response, parse_message
from telephony.sip.transaction import (
    T1,
    T2,
    T4,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    State,
    server_key,
)


def test_non_invite_server_absorbs_retransmissions_until_timer_j():
    request = parse_message(Uac().request("OPTIONS"))
    tx = NonInviteServerTransaction(request, CALLER, "udp")
    assert tx.retransmission() == []  # Trying: nothing to repeat yet
    sent = tx.respond(build_response(request, 200, CALLER), now=0.0)
    assert tx.state is State.COMPLETED and tx.retransmission() == sent
    assert tx.respond(build_response(request, 500, CALLER), now=0.1) == []  # one final response only
    tx.tick(64 * T1 - 0.01)
    assert not tx.terminated
    tx.tick(64 * T1)
    assert tx.terminated


def test_non_invite_server_over_tcp_terminates_at_once():
    request = parse_message(Uac().request("OPTIONS"))
    tx = NonInviteServerTransaction(request, CALLER, "tcp")
    tx.respond(build_response(request, 200, CALLER), now=5.0)
    tx.tick(5.0)
    assert tx.terminated


def test_invite_error_response_completed_confirmed_terminated():
    request = parse_message(Uac().invite())
    tx = InviteServerTransaction(request, CALLER, "udp")
    tx.respond(build_response(request, 486, CALLER, to_tag="x"), now=0.0)
    assert tx.state is State.COMPLETED
    assert len(tx.tick(T1)) == 1  # Timer G
    tx.ack(now=1.0)
    assert tx.state is State.CONFIRMED and tx.tick(2.0) == []
    tx.tick(1.0 + T4)  # Timer I
    assert tx.terminated and not tx.timed_out


def test_invite_2xx_accepted_stops_retransmitting_on_ack_but_absorbs_until_timer_h():
    request = parse_message(Uac().invite())
    tx = InviteServerTransaction(request, CALLER, "udp")
    sent = tx.respond(build_response(request, 200, CALLER, to_tag="x"), now=0.0)
    tx.ack(now=0.2)
    assert tx.tick(10.0) == [] and tx.retransmission() == sent
    tx.tick(64 * T1)
    assert tx.terminated and not tx.timed_out


def test_client_transaction_timer_e_caps_at_t2_and_f_times_out():
    request = parse_message(Uac().request("BYE", to_tag="t"))
    tx = NonInviteClientTransaction(request, CALLER, "udp", now=0.0)
    assert len(tx.start()) == 1
    times, now = [], 0.0
    while not tx.terminated and now < 40:
        now = round(now + 0.25, 2)
        if tx.tick(now):
            times.append(now)
    assert times[:4] == [T1, 3 * T1, 7 * T1, 7 * T1 + T2]
    assert tx.timed_out and now == 64 * T1


def test_cancel_finds_its_invite_by_key():
    uac = Uac()
    invite, cancel = parse_message(uac.invite()), parse_message(uac.request("CANCEL"))
    assert server_key(cancel, method="INVITE") == server_key(invite)
    assert server_key(cancel) != server_key(invite)
