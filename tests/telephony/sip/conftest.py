"""Fixtures for the SIP tests: settings, the sans-I/O core, the torture folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from settings import REPO_ROOT, SipSettings
from sip_test_support import LOCAL
from telephony.sip.uas import UserAgent

TORTURE_DIR = REPO_ROOT.parent / "shared" / "sip-torture"


@pytest.fixture
def sip_settings() -> SipSettings:
    return dataclasses.replace(
        SipSettings(),
        routing="general=sip:general@127.0.0.1:5070;complaint=sip:complaint@127.0.0.1:5070;transport=udp",
        refer_timeout_s=10.0,
        max_calls=5,
    )


@pytest.fixture
def ua(sip_settings: SipSettings) -> UserAgent:
    return UserAgent(sip_settings, LOCAL)


@pytest.fixture
def torture_dir() -> Path:
    if not TORTURE_DIR.is_dir():
        pytest.skip(f"SIP torture messages not found at {TORTURE_DIR} (expected shared/ beside the repo)")
    return TORTURE_DIR
