"""RFC 7433 User-to-User for the screen-pop reference: built strictly, parsed strictly, never a way to inject."""

import secrets

import pytest

from telephony.sip import uui
from telephony.sip.message import parse_uri


def test_a_reference_round_trips_as_isdn_uui_in_hex():
    ref = secrets.token_urlsafe(24)
    value = uui.encode_reference(ref)
    data, *params = value.split(";")
    assert params == ["encoding=hex", "purpose=isdn-uui", "content=isdn-uui"]
    assert data.startswith("04") and bytes.fromhex(data)[1:] == ref.encode()  # IA5 discriminator, then the ref
    assert uui.parse_reference(value) == ref


@pytest.mark.parametrize("reference", ["", "a" * 128, "ref with space", "ref\r\nX-Evil: 1", "参考", "a;b=c"])
def test_only_a_url_safe_reference_of_at_most_127_characters_is_encoded(reference):
    with pytest.raises(uui.UuiError):
        uui.encode_reference(reference)


@pytest.mark.parametrize("value", [
    "04414243;encoding=base64",            # an encoding RFC 7433 does not define
    "0441424;encoding=hex",                # an odd number of hex digits
    "04ZZ;encoding=hex",                   # not hex
    "04" + "41" * 128 + ";encoding=hex",   # 129 octets: more than an ISDN user-user element carries
    "04414243;encoding=hex;=x",            # a parameter with no name
])
def test_malformed_uui_is_not_ours(value):
    assert uui.parse(value) is None and uui.parse_reference(value) is None


def test_other_packages_and_binary_data_carry_no_reference():
    assert uui.parse_reference("04414243;purpose=other-pkg") is None
    assert uui.parse_reference("00414243;encoding=hex") is None  # not IA5 characters
    assert uui.parse_reference("04410A43;encoding=hex") is None  # a control character inside
    assert uui.parse_reference(None) is None and uui.parse_reference("") is None


def test_defaults_follow_rfc_7433_and_only_the_first_of_a_list_counts():
    assert uui.parse_reference("04414243") == "ABC"  # no purpose: isdn-uui; no encoding: the package's hex
    assert uui.parse_reference('04414243;encoding="HEX";purpose=ISDN-UUI, 04585858') == "ABC"


def test_the_embedded_header_keeps_the_refer_to_uri_one_uri():
    value = uui.encode_reference("Ab-_9" * 6)
    uri = uui.with_embedded_header("sip:general@127.0.0.1:5070;transport=udp", uui.HEADER, value)
    parsed = parse_uri(uri)
    assert parsed.params == {"transport": "udp"}  # the UUI's ';' did not become URI parameters
    assert parsed.headers == f"User-to-User={value.replace(';', '%3B').replace('=', '%3D')}"
    assert uui.with_embedded_header(uri, "X-A", "1").endswith("&X-A=1")


@pytest.mark.parametrize("value", ["04" + "41" * 20 + "0A", "04" + "41" * 20 + "0A;encoding=hex;purpose=isdn-uui"])
def test_a_reference_with_a_trailing_newline_is_not_a_reference(value):
    """Well-formed UUI, but "AAAA…\n" is not a token we put in (`$` matched before the newline)."""
    assert uui.parse(value) is not None and uui.parse_reference(value) is None


def test_an_invites_context_headers_take_user_to_user_by_its_name_and_the_first_of_several():
    from telephony.sip.uas import invite_context_headers as context_headers

    headers = [("User-to-User", "04414243;encoding=hex"), ("user-to-user", "04585858;encoding=hex"),
               ("user-to-user-evil", "x"), ("X-IVR-Context-Ref", "ref-1"), ("x-ivr-context-ref", "ref-2"),
               ("via", "SIP/2.0/UDP h")]
    assert context_headers(headers) == {"user-to-user": "04414243;encoding=hex", "x-ivr-context-ref": "ref-1"}
