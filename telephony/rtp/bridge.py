"""Media glue between an `RtpSession` and the voice loop's `CallHandle` (bot/call.py).

Audio and keys only: caller audio and RFC 4733 keys go into the call, bot audio goes out as RTP, and a
barge-in drops the partial frame not yet sent. Signalling callbacks (on_handoff → REFER, on_hangup → BYE,
on_timeout → BYE) stay with the SIP layer, which owns the dialog.
"""

from __future__ import annotations

from bot.call import CallHandle
from telephony.rtp.session import RtpSession


def attach_call(session: RtpSession, call: CallHandle) -> None:
    """Wire `session` and `call` to each other in both directions. Call before `await call.start()`."""
    session.on_audio = call.feed_audio
    session.on_dtmf = call.feed_dtmf
    call.on_audio = session.send_audio
    call.on_clear = session.clear_audio


def detach_call(session: RtpSession, call: CallHandle) -> None:
    """Undo `attach_call` so neither side reaches the other during teardown."""
    session.on_audio = None
    session.on_dtmf = None
    call.on_audio = lambda pcm16: None
    call.on_clear = lambda: None
