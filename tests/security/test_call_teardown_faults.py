"""A call's teardown completes whatever fails inside it (found by review, each test failed before the fix).

The voice loop's teardown (bot/call.py CallHandle._stop) wrote the call record first and freed the admission slot and
woke waiting stops after it, in one `finally`; the record writer let anything but OSError escape. A Rasa reply with a
lone surrogate (valid JSON: "\\ud83d") made the record unwritable (UnicodeEncodeError), so:
  * the slot was never freed (the /media and AudioSocket sessions did not hold the admission themselves), and with a
    limit of one call every door answered busy for the rest of the process's life;
  * every later stop() waited for ever: the door's CallSession.stop never wrote the CDR or freed the slot.
"""

import asyncio
import json
import uuid

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

import settings as settings_module
from bot.admission import Admission
from bot.call import CallInfo, VoiceRuntime
from bot.call_records import CallRecordWriter
from bot.call_session import CallSession
from bot.cdr import CdrWriter
from bot.rasa_client import RasaClient
from bot.services.espeak.tts import EspeakTTSService
from bot.web.app import create_app
from bot.web.voice_loop import VOICE_LOOP_KEY
from telephony.websocket.audiosocket import KIND_HANGUP, KIND_UUID, Message
from telephony.websocket.routes import AUDIOSOCKET_KEY, add_media_service
from tests.bot.voice_doubles import ScriptedRasa

pytestmark = pytest.mark.integration

TOKEN = "review-media-token"


async def until(condition, timeout_s=8.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.fixture
async def gateway(tmp_path):
    rasa = ScriptedRasa(replies={"/call_start": [{"text": "您好\ud83d，欢迎致电。"}]})
    await rasa.start()
    settings = settings_module.Settings.from_env({
        "MEDIA_WS_TOKEN": TOKEN, "AUDIOSOCKET_PORT": "0", "RASA_URL": rasa.url, "CALL_RECORDS_DIR": str(tmp_path)})
    runtime = VoiceRuntime(settings=settings, rasa=RasaClient(rasa.url, "t", timeout_s=2.0),
                           tts_factory=lambda rate: EspeakTTSService(sample_rate=rate),
                           record_writer=CallRecordWriter(tmp_path), admission=Admission(1))
    app = create_app(settings, voice_runtime=runtime, extra_setup=[add_media_service])
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield server, app, rasa
    try:  # a leaked call also hangs shutdown (CallHandle._stopped never set): don't let that hang the test run
        await asyncio.wait_for(server.close(), 10)
    except asyncio.TimeoutError:
        pass
    await rasa.stop()


async def test_media_stream_call_frees_its_slot_even_if_the_call_record_cannot_be_written(gateway):
    server, app, rasa = gateway
    admission = app[VOICE_LOOP_KEY].admission
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(str(server.make_url("/media")) + f"?token={TOKEN}")
        await ws.send_str(json.dumps({"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1"}}))
        assert await until(lambda: admission.in_use == 1 and rasa.messages)
        await asyncio.sleep(0.5)  # the greeting reply reached the call record
        await ws.send_str(json.dumps({"event": "stop"}))
        await ws.close()
    assert await until(lambda: admission.in_use == 0), "the /media call ended but its admission slot is still held"


async def test_audiosocket_call_frees_its_slot_even_if_the_call_record_cannot_be_written(gateway):
    server, app, rasa = gateway
    admission = app[VOICE_LOOP_KEY].admission
    reader, writer = await asyncio.open_connection("127.0.0.1", app[AUDIOSOCKET_KEY].port)
    writer.write(Message(KIND_UUID, uuid.uuid4().bytes).serialise())
    assert await until(lambda: admission.in_use == 1 and rasa.messages)
    await asyncio.sleep(0.5)
    writer.write(Message(KIND_HANGUP).serialise())
    await writer.drain()
    writer.close()
    assert await until(lambda: admission.in_use == 0), "the AudioSocket call ended but its slot is still held"


class RecordWriterThatRaises:
    def write(self, record):
        raise UnicodeEncodeError("utf-8", "\ud83d", 0, 1, "surrogates not allowed")


@pytest.fixture
async def runtime(tmp_path):
    rasa = ScriptedRasa(replies={"/call_start": [{"text": "您好。"}]})
    await rasa.start()
    settings = settings_module.Settings.from_env({"RASA_URL": rasa.url, "CALL_RECORDS_DIR": str(tmp_path)})
    runtime = VoiceRuntime(settings=settings, rasa=RasaClient(rasa.url, "t", timeout_s=2.0),
                           tts_factory=lambda rate: EspeakTTSService(sample_rate=rate),
                           record_writer=RecordWriterThatRaises(), admission=Admission(2))
    yield runtime
    await runtime.rasa.close()
    await rasa.stop()


async def test_the_voice_loop_frees_the_slot_even_when_its_call_record_cannot_be_written(runtime):
    call = runtime.create_call(CallInfo("media_stream-1", "13800000001"))
    await call.start()
    assert runtime.admission.in_use == 1
    try:
        await call.stop("remote_hangup")
    except Exception:
        pass  # a failure to write the record may be reported; the slot must still come back
    assert runtime.admission.in_use == 0, "slot leaked"
    assert "media_stream-1" not in runtime.calls


async def test_after_a_failed_background_stop_the_doors_teardown_completes(runtime, tmp_path):
    """The bot hangs up → CallHandle stops itself in the background, and fails in _finish_record; then the door's
    session stops: it must not wait for ever, and must free the slot and write its CDR."""
    session = CallSession(runtime.create_call, "sip", cdr_writer=CdrWriter(tmp_path), admission=runtime.admission)
    assert session.admit()
    assert await session.start(on_audio=lambda pcm: None, on_clear=lambda: None)
    voice = session.voice
    background = asyncio.ensure_future(voice.stop("bot_hangup"))  # what CallHandle._on_control does
    await asyncio.gather(background, return_exceptions=True)
    door_stop = asyncio.ensure_future(session.stop("remote_bye"))
    await asyncio.wait({door_stop}, timeout=5.0)  # not wait_for: cancelling it would run _close_books for us
    cdrs = list(tmp_path.glob("cdr-*.jsonl"))
    state = (door_stop.done(), runtime.admission.in_use, len(cdrs))
    door_stop.cancel()
    await asyncio.gather(door_stop, return_exceptions=True)
    assert state == (True, 0, 1), f"5 s on: door stop done, slots in use, CDR files = {state}"
