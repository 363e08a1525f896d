"""The logging convention: `call=<id>` on every line (the per-call adapter, the call's context for code that does
not know its call, pipecat's loguru lines routed into the same stream) and `record.call_id` for structured
handlers."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
from loguru import logger as loguru_logger
from pipecat.frames.frames import Frame, StartFrame, TTSSpeakFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from bot.call import CallInfo, VoiceRuntime
from bot.call_log import CallIdFilter, call_context, call_logger, configure_logging, route_loguru_to_logging
from bot.rasa_client import RasaClient
from settings import Settings
from tests.bot.voice_doubles import ScriptedRasa


def test_every_line_names_the_call(caplog):
    log = call_logger(logging.getLogger("telephony.test"), "sip-42")
    with caplog.at_level(logging.DEBUG, logger="telephony.test"):
        log.info("answered (%s)", "PCMU")
        log.debug("dtmf key received (%s)", "sip info")
        log.warning("extra survives", extra={"peer": "pbx"})
    assert [r.getMessage() for r in caplog.records] == [
        "call=sip-42 answered (PCMU)", "call=sip-42 dtmf key received (sip info)", "call=sip-42 extra survives"]
    assert {r.call_id for r in caplog.records} == {"sip-42"}
    assert caplog.records[-1].peer == "pbx"


def test_a_call_without_an_id_yet_is_marked_unknown(caplog):
    with caplog.at_level(logging.INFO, logger="telephony.test"):
        call_logger(logging.getLogger("telephony.test"), None).info("stream opened")
    assert caplog.records[0].getMessage() == "call=- stream opened"


class Collected(logging.Handler):
    """The gateway's handler, reduced to a list: its CallIdFilter and the message as it would be printed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(CallIdFilter())
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def handler():
    collected = Collected()
    logger = logging.getLogger("tests.in_call")
    logger.addHandler(collected)
    logger.setLevel(logging.DEBUG)
    yield collected
    logger.removeHandler(collected)
    logger.setLevel(logging.NOTSET)


async def test_lines_of_a_call_context_and_of_its_tasks_name_the_call(handler):
    log = logging.getLogger("tests.in_call")

    async def processor() -> None:  # created inside the call, like a pipeline's tasks: inherits its context
        await asyncio.sleep(0)
        log.info("frame %s", "seen")

    log.info("gateway up")
    with call_context("sip-7"):
        task = asyncio.create_task(processor())
    log.info("%d%% outside", 100)
    await task
    call_logger(log, "web-1").info("adapter lines keep their own id")
    assert handler.messages == ["call=- gateway up", "call=- 100% outside", "call=sip-7 frame seen",
                                "call=web-1 adapter lines keep their own id"]


def test_a_percent_in_a_call_id_survives_formatting(handler):
    with call_context("odd-%s-id"):
        logging.getLogger("tests.in_call").warning("key %s", "ignored")
        logging.getLogger("tests.in_call").warning("no args 100%")
    assert handler.messages == ["call=odd-%s-id key ignored", "call=odd-%s-id no args 100%"]


def test_loguru_lines_join_the_stdlib_stream_at_the_chosen_level(handler):
    sink = route_loguru_to_logging("INFO")
    try:
        with call_context("sip-9"):
            as_pipecat = loguru_logger.patch(lambda record: record.update(name="tests.in_call"))  # its logger name
            as_pipecat.info("pipecat says {}", "hi")
            as_pipecat.debug("frame dump, never at INFO")
    finally:
        loguru_logger.remove(sink)
        loguru_logger.add(sys.stderr)
    assert handler.messages == ["call=sip-9 pipecat says hi"]


class LoggingPassThrough(FrameProcessor):
    """Stands in for the TTS: a processor that does not know its call, logging like pipecat code does (stdlib and
    loguru) when the pipeline starts and when the greeting's text reaches it."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            logging.getLogger("tests.in_call.tts").info("pipeline started")
        elif isinstance(frame, TTSSpeakFrame):
            loguru_logger.info("speaking {} characters", len(frame.text))
        await self.push_frame(frame, direction)


async def test_a_processor_inside_a_running_call_logs_with_the_call_id(tmp_path, log_lines):
    rasa = ScriptedRasa(replies={"/call_start": [{"text": "您好。"}]})
    await rasa.start()
    runtime = VoiceRuntime(settings=Settings(), rasa=RasaClient(rasa.url, "t", timeout_s=2.0),
                           tts_factory=lambda rate: LoggingPassThrough())
    call = runtime.create_call(CallInfo(call_id="web-logtest", caller_number="13800000001"))
    try:
        await call.start()
        for _ in range(100):
            if any("speaking" in line for line in log_lines):
                break
            await asyncio.sleep(0.02)
        logging.getLogger("tests.outside").info("between calls")
    finally:
        await call.stop()
        await runtime.close()
        await rasa.stop()
    assert "INFO tests.in_call.tts: call=web-logtest pipeline started" in log_lines
    assert any(line.endswith("call=web-logtest speaking 3 characters") for line in log_lines)
    assert "INFO tests.outside: call=- between calls" in log_lines
    assert all("call=" in line for line in log_lines)


def test_the_gateway_process_has_one_stream_with_the_call_on_every_line(capsys):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info")  # what `python -m telephony.gateway --log-level info` does first
        with call_context("sip-3"):
            loguru_logger.info("from pipecat")
            loguru_logger.debug("never at INFO")
        logging.getLogger("telephony.gateway").info("gateway up")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        loguru_logger.remove()
        loguru_logger.add(sys.stderr)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [  # after the date and time
        f"INFO {__name__}: call=sip-3 from pipecat", "INFO telephony.gateway: call=- gateway up"]
