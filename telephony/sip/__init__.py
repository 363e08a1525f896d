"""SIP user agent server (RFC 3261) for the IVR: a sans-I/O core and one asyncio adapter.

    digits.py       numbers on the wire: ASCII digits only (str.isdigit/int accept '²', '٣')
    message.py      parse/serialise, §25 syntax checks, responses
    transaction.py  §17 server (INVITE, non-INVITE) and client (non-INVITE) transactions, Timers A-K
    dialog.py       §12 dialogs: id, CSeq, route set, remote target, in-dialog requests
    sdp.py          RFC 4566 SDP, RFC 3264 offer/answer for PCMU/PCMA + telephone-event
    security.py     CIDR allow-list, digest auth, scanner drop, per-source rate limit, size limit
    refer.py        RFC 3515 REFER to the routing table's queues, message/sipfrag NOTIFY outcome
    uas.py          the core: UserAgent.feed(datagram, source, now) / tick(now) -> datagrams + events
    transport.py    SipServer: the only code with sockets (UDP + TCP, bounded), wakes at the core's next deadline

Knows nothing about banking; telephony/sip_calls.py joins a SIP call to RTP and the voice loop.
"""
