"""RTP media for SIP calls: RFC 3550 packets, G.711, jitter buffer, RFC 4733 DTMF, one session per call."""
