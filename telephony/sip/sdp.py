"""SDP (RFC 4566) parse/serialise and the RFC 3264 offer/answer the bridge needs.

We speak G.711 only: PCMU (0) and PCMA (8) at 8 kHz, ptime 20, plus RFC 4733 telephone-event.
`negotiate` picks the first codec of the offer we support (the offerer's preference, RFC 3264 §6.1) and
mirrors the direction (hold: sendonly/inactive or the RFC 2543 `c=0.0.0.0`); `NoCommonCodec` means 488.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from telephony.sip.digits import ascii_int

SUPPORTED_CODECS = {0: "PCMU", 8: "PCMA"}
CODEC_PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8}
DEFAULT_TELEPHONE_EVENT_PT = 101
PTIME_MS = 20
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# What the other side's direction means for ours (RFC 3264 §6.1).
MIRRORED_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
MAX_SDP_BYTES = 16_384


class SdpError(ValueError):
    """The body is not usable SDP."""


class NoCommonCodec(Exception):
    """The offer has no audio stream we can accept (answer 488)."""


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    def attribute(self, name: str) -> list[str | None]:
        return [value for key, value in self.attributes if key == name]

    def rtpmap(self) -> dict[int, str]:
        """payload type -> `encoding/clock` (upper-cased encoding)."""
        mapping: dict[int, str] = {}
        for value in self.attribute("rtpmap"):
            pt_text, _, encoding = (value or "").partition(" ")
            pt = ascii_int(pt_text)
            if pt is not None:
                mapping[pt] = encoding.strip().upper()
        return mapping

    @property
    def direction(self) -> str | None:
        for key, _ in self.attributes:
            if key in DIRECTIONS:
                return key
        return None


@dataclass
class SessionDescription:
    origin: str = "- 0 0 IN IP4 127.0.0.1"
    session_name: str = "-"
    connection: str | None = None
    timing: str = "0 0"
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    def serialise(self) -> bytes:
        lines = ["v=0", f"o={self.origin}", f"s={self.session_name}"]
        if self.connection:
            lines.append(f"c={self.connection}")
        lines.append(f"t={self.timing}")
        lines += [_attribute_line(key, value) for key, value in self.attributes]
        for media in self.media:
            lines.append(f"m={media.media} {media.port} {media.proto} {' '.join(media.formats)}")
            if media.connection:
                lines.append(f"c={media.connection}")
            lines += [_attribute_line(key, value) for key, value in media.attributes]
        return ("\r\n".join(lines) + "\r\n").encode()


def _attribute_line(key: str, value: str | None) -> str:
    return f"a={key}" if value is None else f"a={key}:{value}"


def parse_sdp(body: bytes) -> SessionDescription:
    """Lenient about order and unknown lines, strict about what we use (m= and c=)."""
    if len(body) > MAX_SDP_BYTES:
        raise SdpError("SDP too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SdpError("SDP is not UTF-8") from error
    session = SessionDescription()
    current: MediaDescription | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"malformed SDP line {line[:40]!r}")
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            current = _parse_media_line(value)
            session.media.append(current)
        elif kind == "c":
            _check_connection(value)
            if current is None:
                session.connection = value
            else:
                current.connection = value
        elif kind == "a":
            name, colon, attr_value = value.partition(":")
            target = current.attributes if current else session.attributes
            target.append((name, attr_value if colon else None))
        elif kind == "o" and current is None:
            session.origin = value
        elif kind == "s" and current is None:
            session.session_name = value
    return session


def _parse_media_line(value: str) -> MediaDescription:
    parts = value.split()
    port = ascii_int(parts[1].split("/")[0]) if len(parts) >= 4 else None
    if port is None:
        raise SdpError(f"malformed m= line {value[:40]!r}")
    if port > 65535:
        raise SdpError("m= port out of range")
    return MediaDescription(parts[0], port, parts[2], parts[3:])


def _check_connection(value: str) -> None:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"malformed c= line {value[:40]!r}")


@dataclass(frozen=True)
class MediaPlan:
    """The negotiated audio stream: what the RTP layer needs."""

    remote_host: str
    remote_port: int
    payload_type: int
    codec: str  # "PCMU" | "PCMA"
    telephone_event_pt: int | None
    ptime_ms: int
    direction: str  # our direction: sendrecv, recvonly (caller holds us), inactive

    @property
    def on_hold(self) -> bool:
        return self.direction != "sendrecv"


def negotiate(offer: SessionDescription) -> MediaPlan:
    """Answer the first audio stream of an offer (RFC 3264 §6). Raises NoCommonCodec."""
    for media in offer.media:
        if media.media != "audio" or media.port == 0 or not media.proto.startswith("RTP/AVP"):
            continue
        codec = _first_supported_codec(media)
        if codec is None:
            continue
        connection = media.connection or offer.connection
        if not connection:
            raise SdpError("no c= line for the audio stream")
        host = connection.split()[2].split("/")[0]
        offered_direction = media.direction or _session_direction(offer) or "sendrecv"
        direction = MIRRORED_DIRECTION[offered_direction]
        if host in ("0.0.0.0", "::"):
            direction = "inactive" if offered_direction == "inactive" else "recvonly"  # RFC 2543-style hold
        return MediaPlan(host, media.port, codec[0], codec[1], _telephone_event_pt(media), PTIME_MS, direction)
    raise NoCommonCodec("no PCMU/PCMA audio stream in the offer")


def _session_direction(offer: SessionDescription) -> str | None:
    for key, _ in offer.attributes:
        if key in DIRECTIONS:
            return key
    return None


def _first_supported_codec(media: MediaDescription) -> tuple[int, str] | None:
    rtpmap = media.rtpmap()
    for fmt in media.formats:
        pt = ascii_int(fmt)
        if pt is None:
            continue
        encoding = rtpmap.get(pt)
        if encoding is None and pt in SUPPORTED_CODECS:  # static payload types need no rtpmap
            return pt, SUPPORTED_CODECS[pt]
        if encoding:
            name, _, clock = encoding.partition("/")
            if name in CODEC_PAYLOAD_TYPES and clock in ("", "8000"):
                return pt, name
    return None


def _telephone_event_pt(media: MediaDescription) -> int | None:
    for pt, encoding in media.rtpmap().items():
        if encoding.startswith("TELEPHONE-EVENT/8000"):
            return pt
    return None


_session_ids = itertools.count(int(time.time()))


@dataclass
class LocalMedia:
    """Our side of a call's audio: where we receive RTP. `version` bumps on every new answer (RFC 3264 §8)."""

    host: str
    port: int
    session_id: int = field(default_factory=lambda: next(_session_ids))
    version: int = 0


def build_answer(plan: MediaPlan, local: LocalMedia) -> SessionDescription:
    """Our SDP answer for a negotiated plan."""
    local.version += 1
    formats = [str(plan.payload_type)]
    attributes: list[tuple[str, str | None]] = [("rtpmap", f"{plan.payload_type} {plan.codec}/8000")]
    if plan.telephone_event_pt is not None:
        formats.append(str(plan.telephone_event_pt))
        attributes += [
            ("rtpmap", f"{plan.telephone_event_pt} telephone-event/8000"),
            ("fmtp", f"{plan.telephone_event_pt} 0-16"),
        ]
    attributes += [("ptime", str(plan.ptime_ms)), (plan.direction, None)]
    return _description(local, [MediaDescription("audio", local.port, "RTP/AVP", formats, None, attributes)])


def build_offer(local: LocalMedia) -> SessionDescription:
    """Our offer when an INVITE came without SDP (the answer then arrives in the ACK, RFC 3261 §13.2.1)."""
    local.version += 1
    pt = DEFAULT_TELEPHONE_EVENT_PT
    attributes: list[tuple[str, str | None]] = [
        ("rtpmap", "0 PCMU/8000"), ("rtpmap", "8 PCMA/8000"), ("rtpmap", f"{pt} telephone-event/8000"),
        ("fmtp", f"{pt} 0-16"), ("ptime", str(PTIME_MS)), ("sendrecv", None),
    ]
    return _description(local, [MediaDescription("audio", local.port, "RTP/AVP", ["0", "8", str(pt)], None, attributes)])


def _description(local: LocalMedia, media: list[MediaDescription]) -> SessionDescription:
    family = "IP6" if ":" in local.host else "IP4"
    return SessionDescription(
        origin=f"ivr {local.session_id} {local.version} IN {family} {local.host}",
        session_name="ivr",
        connection=f"IN {family} {local.host}",
        media=media,
    )
