"""The call records' caller key (bot/caller_keys.py): repeat calls match, the number cannot be read back from the
records folder, and the key's secret is never weak or beside the records."""

from __future__ import annotations

import dataclasses
import hashlib
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.caller_keys import CallerKeys, WeakSecret, caller_key, deployment_secret, normalized_number
from bot.masking import mask_caller_number
from bot.web.access import UnsafeBinding, require_safe_binding
from settings import GatewaySettings, Settings

SECRET = "cluster-wide-secret-0123456789"


def gateway(tmp_path, **fields) -> GatewaySettings:
    fields.setdefault("caller_key_file", str(tmp_path / "secrets" / "caller-key"))
    return dataclasses.replace(GatewaySettings(), call_records_dir=str(tmp_path / "calls"), **fields)


def test_the_same_number_gives_the_same_key_and_no_plain_hash():
    key = caller_key("13800000001", b"secret-a")
    assert key == caller_key("13800000001", b"secret-a") and len(key) == 32
    assert key != caller_key("13800000002", b"secret-a") != caller_key("13800000001", b"secret-b")
    # without the secret, hashing every phone number finds nothing
    assert key not in (hashlib.sha256(b"13800000001").hexdigest(), hashlib.md5(b"13800000001").hexdigest())
    assert caller_key("", b"secret-a") == "" and caller_key("  ", b"secret-a") == ""


@pytest.mark.parametrize("not_a_number", ["anonymous", "Anonymous", "unknown", "restricted", "sip:alice@x",
                                          "12", "1380000000１", "138 0000 0001", "+", "1" * 21, "٣٣٣٣٣"])
def test_only_numbers_are_keyed_so_anonymous_callers_never_repeat_each_other(not_a_number):
    assert caller_key(not_a_number, b"secret-a") == ""


@pytest.mark.parametrize("same", ["+8613800000001", "008613800000001", "8613800000001", " 13800000001 "])
def test_a_mainland_mobile_is_the_same_caller_with_or_without_the_country_code(same):
    assert normalized_number(same) == "13800000001"
    assert caller_key(same, b"secret-a") == caller_key("13800000001", b"secret-a")
    assert normalized_number("+12125550100") == "+12125550100"  # other countries keep their +


def test_the_deployment_secret_comes_from_settings(tmp_path):
    assert deployment_secret(gateway(tmp_path, caller_key_secret=SECRET)) == SECRET.encode()
    assert not (tmp_path / "calls").exists() and not (tmp_path / "secrets").exists()


def test_a_short_secret_is_refused_by_the_keys_and_at_start_up(tmp_path):
    short = gateway(tmp_path, caller_key_secret="s3cret")
    with pytest.raises(WeakSecret, match="shorter than 16"):
        deployment_secret(short)
    assert CallerKeys(short).key("13800000001") == ""  # a call goes on, unkeyed
    settings = dataclasses.replace(Settings.from_env({}), gateway=short)
    with pytest.raises(UnsafeBinding, match="CALLER_KEY_SECRET is shorter than 16"):
        require_safe_binding(settings)
    require_safe_binding(dataclasses.replace(settings, gateway=gateway(tmp_path, caller_key_secret=SECRET)))


def test_without_a_setting_one_host_key_is_made_once_private_and_away_from_the_records(tmp_path):
    settings = gateway(tmp_path)
    with ThreadPoolExecutor(8) as pool:  # gateways starting together keep one key
        secrets = set(pool.map(lambda _: deployment_secret(settings), range(16)))
    assert len(secrets) == 1 and len(secrets.pop()) == 64
    path = tmp_path / "secrets" / "caller-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["caller-key"]  # no draft left behind
    assert deployment_secret(settings) == path.read_text().strip().encode()
    assert not (tmp_path / "calls").exists()  # nothing of the key in the records folder


def test_the_records_folder_alone_does_not_give_the_number_back(tmp_path):
    """The review's attack: a masked number and its key, and the 10^4 hidden digits tried against every key file
    found in the records folder. With the default settings there is none there to try."""
    settings = gateway(tmp_path, caller_key_file=GatewaySettings().caller_key_file)
    assert not GatewaySettings().caller_key_file.startswith(GatewaySettings().call_records_dir)
    keys = CallerKeys(gateway(tmp_path))
    record = {"caller_number": mask_caller_number("13912345678"), "caller_key": keys.key("13912345678")}
    (tmp_path / "calls").mkdir()
    found = [path.read_bytes().strip() for path in (tmp_path / "calls").rglob("*") if path.is_file()]
    prefix, suffix = record["caller_number"][:3], record["caller_number"][-4:]
    guesses = (f"{prefix}{middle:04d}{suffix}" for middle in range(10_000))
    assert not [n for n in guesses for secret in found if caller_key(n, secret) == record["caller_key"]]
    assert settings.caller_key_file.endswith("var/secrets/caller-key")


def test_a_key_file_under_the_records_folder_is_refused(tmp_path):
    with pytest.raises(OSError, match="under CALL_RECORDS_DIR"):
        deployment_secret(gateway(tmp_path, caller_key_file=str(tmp_path / "calls" / ".caller-key")))


def test_a_damaged_or_readable_key_file_is_an_error_not_a_weak_key(tmp_path):
    (tmp_path / "secrets").mkdir(mode=0o700)
    path = tmp_path / "secrets" / "caller-key"
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(OSError, match="no usable caller key"):
        deployment_secret(gateway(tmp_path))
    path.write_text("a" * 64 + "\n")
    path.chmod(0o644)
    with pytest.raises(OSError, match="other users"):
        deployment_secret(gateway(tmp_path))
