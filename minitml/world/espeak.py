"""Speech synthesis with eSpeak NG, called directly through ctypes.

The `espeakng-loader` wheel ships the eSpeak NG shared library and its voice
data, so nothing is downloaded. We use the library's synchronous mode: every
block of samples it produces arrives in a callback, together with events; the
WORD events tell us when each word starts, which gives the toy world its
ground-truth word times for free.

    speech = synthesize("hello there", voice="en-us", rate=170, pitch=50)
    speech.wave         # float32 tensor (T,) at 16 kHz, in [-1, 1]
    speech.words        # [("hello", 0.0), ("there", 0.39)]  word, start (s)

The library keeps global state, so all calls go through one lock. Some of that
state (the voice source's phase, echo buffers) carries over from one utterance
to the next and cannot be reset through the API: the same text would come out a
few samples different depending on what was said before. So by default every
call unloads and reloads the library (about 5 ms), and every utterance starts
from the same state: same arguments, same samples, bit for bit.
"""

from __future__ import annotations

import _ctypes
import ctypes
import threading
from dataclasses import dataclass

import torch

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position of the word
        ("length", ctypes.c_int),  # characters in the word
        ("audio_position", ctypes.c_int),  # ms from the start of this synthesis
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass
class Speech:
    wave: torch.Tensor  # (T,) float32 in [-1, 1]
    sample_rate: int
    words: list[tuple[str, float]]  # (word, start time in seconds)

    @property
    def duration(self) -> float:
        return self.wave.numel() / self.sample_rate


class _Engine:
    """One loaded library, its native sample rate, and the callback buffers."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as err:
            raise RuntimeError(
                "speech synthesis needs the 'espeakng-loader' package "
                "(pip install espeakng-loader); it ships eSpeak NG and its voices"
            ) from err
        path = espeakng_loader.get_library_path()
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as err:
            raise RuntimeError(f"could not load the eSpeak NG library at {path}: {err}") from err
        data = espeakng_loader.get_data_path()  # .../espeak-ng-data
        self.native_rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0
        )
        if self.native_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data at {data}")
        # Its noise generator (breathy and whispered voices) is seeded from the clock at
        # start-up: seed it, and the C library's rand(), to fixed values instead.
        if hasattr(self.lib, "espeak_ng_SetRandSeed"):
            self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            self.lib.espeak_ng_SetRandSeed(0)
        ctypes.CDLL(None).srand(0)
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.chunks: list[torch.Tensor] = []
        self.events: list[tuple[int, int, int]] = []  # (text_position, length, ms)
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds a pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def close(self) -> None:
        """Unload the library, so that the next load starts from fresh static state."""
        self.lib.espeak_Terminate()
        dlclose = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
        dlclose(self.lib._handle)

    def _on_audio(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            samples = ctypes.cast(wav, ctypes.POINTER(ctypes.c_short * n_samples)).contents
            self.chunks.append(torch.frombuffer(bytearray(samples), dtype=torch.int16))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_WORD:
                self.events.append((e.text_position, e.length, e.audio_position))
            i += 1
        return 0  # 0 = keep going


_engine: _Engine | None = None
_lock = threading.Lock()


def synthesize(
    text: str,
    voice: str = "en-us",
    rate: int = 170,
    pitch: int = 50,
    pitch_range: int = 50,
    volume: int = 100,
    sample_rate: int = 16_000,
    fresh: bool = True,
) -> Speech:
    """Speak `text` and return the waveform at `sample_rate` and the word start times.

    voice: an eSpeak NG voice name ("en-us", "en", "en-gb-x-rp", variants like
    "en-us+f3"); rate: words per minute (80-450); pitch, pitch_range: 0-100;
    volume: 0-200. fresh=False skips the reload (faster, but the samples then depend
    slightly on what was synthesized before).
    """
    global _engine
    if not text.strip():
        raise ValueError("synthesize needs some text, got an empty string")
    with _lock:
        if _engine is not None and fresh:
            _engine.close()
            _engine = None
        if _engine is None:
            _engine = _Engine()
        eng = _engine
        if eng.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice named {voice!r}")
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch),
                             (_PARAM_RANGE, pitch_range), (_PARAM_VOLUME, volume)):
            eng.lib.espeak_SetParameter(param, int(value), 0)
        eng.chunks, eng.events = [], []
        data = text.encode("utf-8")
        status = eng.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                      None, None)
        if status != 0:
            raise RuntimeError(f"eSpeak NG could not synthesize {text!r} (error {status})")
        pcm = torch.cat(eng.chunks) if eng.chunks else torch.zeros(0, dtype=torch.int16)
        events, native_rate = list(eng.events), eng.native_rate

    wave = pcm.float() / 32768.0  # int16 PCM -> [-1, 1)
    if native_rate != sample_rate:
        from minitml.wav import resample

        wave = resample(wave, native_rate, sample_rate)
    words = []
    for position, length, ms in events:
        start = position - 1  # 1-based character offset into the UTF-8 bytes
        word = data[start:start + length].decode("utf-8", errors="replace")
        words.append((word, ms / 1000.0))
    return Speech(wave=wave.contiguous(), sample_rate=sample_rate, words=words)
