"""Translates the dialogue's control frames into the engines' own settings updates.

The dialogue speaks in the call contract's terms (`SpeechRateFrame`, `ExpectInputFrame`); the engines take
pipecat's `TTSUpdateSettingsFrame` / `STTUpdateSettingsFrame` with their own Settings classes. Keeping the
translation here leaves the Rasa bridge free of engine classes and the engines free of the call contract.
"""

from __future__ import annotations

import logging
from dataclasses import fields

from pipecat.frames.frames import Frame, STTUpdateSettingsFrame, TTSUpdateSettingsFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from bot.frames import ExpectInputFrame, SpeechRateFrame

log = logging.getLogger(__name__)


class EngineControls(FrameProcessor):
    """Sits between the Rasa bridge and the TTS.

    Frames in: SpeechRateFrame, ExpectInputFrame (both broadcast by the bridge).
    Frames out: TTSUpdateSettingsFrame(speech_rate) downstream, in order with the reply's texts;
    STTUpdateSettingsFrame(expect_digits, secure) upstream to the recognizer. Engines whose Settings lack
    those fields are left alone.
    """

    def __init__(self, *, tts: FrameProcessor | None, stt: FrameProcessor | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._tts = tts
        self._stt = stt

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            return
        if isinstance(frame, SpeechRateFrame):
            await self._update_tts_rate(frame.rate)
        elif isinstance(frame, ExpectInputFrame):
            await self._update_stt_mode(frame)

    async def _update_tts_rate(self, rate: float) -> None:
        delta = _settings_delta(self._tts, speech_rate=rate)
        if delta is not None:
            await self.push_frame(TTSUpdateSettingsFrame(delta=delta, service=self._tts))

    async def _update_stt_mode(self, expect: ExpectInputFrame) -> None:
        delta = _settings_delta(self._stt, expect_digits=expect.active, secure=expect.active and expect.secure)
        if delta is not None:
            await self.push_frame(STTUpdateSettingsFrame(delta=delta, service=self._stt), FrameDirection.UPSTREAM)


def _settings_delta(service: FrameProcessor | None, **values):
    """A Settings delta of `service`'s own class carrying `values`, or None if it does not have those fields."""
    settings_cls = getattr(service, "Settings", None)
    if service is None or settings_cls is None:
        return None
    known = {f.name for f in fields(settings_cls)}
    if not set(values) <= known:
        log.debug("%s has no settings %s; not updating it", service, sorted(set(values) - known))
        return None
    return settings_cls(**values)
