"""A fake Google Cloud Text-to-Speech v1 server on loopback, for the real client library.

Like Google it refuses unknown voices, a language that does not match the voice, and more than
5000 bytes of text; and it returns the audio inside a WAV file: mu-law with the 58-byte header
(an 18-byte fmt chunk and a fact chunk), LINEAR16 with the 44-byte one. Optional LIST chunks
(odd-sized, so padded) come before the data, as some encoders write them. The samples are made
from the text (`render`), so a test can tell whether any header byte was left in or any sample
was lost.
"""

from __future__ import annotations

import audioop  # deprecated in 3.12, removed in 3.13; the machines run 3.11
import struct
import threading
from dataclasses import dataclass

import grpc
from google.cloud import texttospeech_v1 as tts

from tests.fakes.grpc_server import LoopbackGrpcServer

MAX_INPUT_BYTES = 5000
VOICES = (
    "he-IL-Standard-A",
    "he-IL-Standard-B",
    "he-IL-Wavenet-A",
    "he-IL-Wavenet-B",
    "en-US-Standard-C",
)
WAVE_FORMAT_PCM = 1
WAVE_FORMAT_MULAW = 7


def render(text: str) -> bytes:
    """Return the 8 kHz mu-law samples the fake speaks for `text` (20 ms per character)."""
    out = bytearray()
    for char in text:
        # Codes 0x10..0x73: never 0xFF/0x7F (silence), so no sample looks like padding.
        out += bytes([0x10 + ord(char) % 100]) * 160
    return bytes(out)


def chunk(chunk_id: bytes, body: bytes) -> bytes:
    """Return one RIFF chunk, padded to an even size as RIFF requires."""
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def wav_file(
    samples: bytes,
    *,
    format_tag: int,
    sample_rate: int,
    bits: int,
    channels: int = 1,
    fmt_extra: bytes | None = None,
    fact: bool = False,
    before_data: tuple[bytes, ...] = (),
) -> bytes:
    """Build a WAV file: fmt (16 bytes, or 18+ with `fmt_extra`), optional fact, then data."""
    align = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH", format_tag, channels, sample_rate, sample_rate * align, align, bits
    )
    if fmt_extra is not None:
        fmt += struct.pack("<H", len(fmt_extra)) + fmt_extra
    body = b"WAVE" + chunk(b"fmt ", fmt)
    if fact:
        body += chunk(b"fact", struct.pack("<I", len(samples) // max(1, align)))
    for extra in before_data:
        body += extra
    # The data chunk is last: its pad byte (if any) is left off, as many writers do.
    body += b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def list_info_chunk(software: str) -> bytes:
    """Return a LIST/INFO chunk naming the software, its last sub-chunk left unpadded.

    Writers differ on padding inside a LIST; with an odd-length name the LIST itself is then
    odd-sized, so a reader must skip its pad byte to find the next chunk.
    """
    text = software.encode() + b"\0"
    return chunk(b"LIST", b"INFO" + b"ISFT" + struct.pack("<I", len(text)) + text)


@dataclass
class SynthesisLog:
    text: str
    voice: str
    language: str
    encoding: int
    sample_rate: int


class FakeTtsServer(LoopbackGrpcServer):
    """Google's TextToSpeech v1 `SynthesizeSpeech` on 127.0.0.1, plaintext gRPC."""

    service = "google.cloud.texttospeech.v1.TextToSpeech"
    thread_name_prefix = "fake-tts"

    def __init__(self, *, list_chunk: bool = False) -> None:
        super().__init__()
        self.list_chunk = list_chunk
        self.requests: list[SynthesisLog] = []
        self._faults: list[grpc.StatusCode] = []
        self._lock = threading.Lock()

    def _methods(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                self._synthesize,
                request_deserializer=tts.SynthesizeSpeechRequest.deserialize,
                response_serializer=tts.SynthesizeSpeechResponse.serialize,
            )
        }

    def fail_next(self, code: grpc.StatusCode) -> None:
        """Make the next request fail with `code`."""
        with self._lock:
            self._faults.append(code)

    def _synthesize(
        self, request: tts.SynthesizeSpeechRequest, context: grpc.ServicerContext
    ) -> tts.SynthesizeSpeechResponse:
        voice = request.voice
        config = request.audio_config
        with self._lock:
            self.requests.append(
                SynthesisLog(
                    request.input.text,
                    voice.name,
                    voice.language_code,
                    config.audio_encoding,
                    config.sample_rate_hertz,
                )
            )
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            context.abort(fault, fault.name.lower())
        if len(request.input.text.encode()) > MAX_INPUT_BYTES:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Either `input.text` or `input.ssml` is longer than the limit of "
                f"{MAX_INPUT_BYTES} bytes.",
            )
        if voice.name not in VOICES:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Voice '{voice.name}' does not exist.")
        if not voice.name.startswith(voice.language_code + "-"):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Requested language code '{voice.language_code}' doesn't match the voice "
                f"'{voice.name}'.",
            )
        rate = config.sample_rate_hertz or 24000
        ulaw = render(request.input.text)
        extra = (list_info_chunk("Lavf58.76.100"),) if self.list_chunk else ()
        if config.audio_encoding == tts.AudioEncoding.MULAW:
            if rate != 8000:
                pcm, _ = audioop.ratecv(audioop.ulaw2lin(ulaw, 2), 2, 1, 8000, rate, None)
                ulaw = audioop.lin2ulaw(pcm, 2)
            audio = wav_file(
                ulaw,
                format_tag=WAVE_FORMAT_MULAW,
                sample_rate=rate,
                bits=8,
                fmt_extra=b"",
                fact=True,
                before_data=extra,
            )
        elif config.audio_encoding == tts.AudioEncoding.LINEAR16:
            pcm, _ = audioop.ratecv(audioop.ulaw2lin(ulaw, 2), 2, 1, 8000, rate, None)
            audio = wav_file(
                pcm, format_tag=WAVE_FORMAT_PCM, sample_rate=rate, bits=16, before_data=extra
            )
        else:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "This fake speaks MULAW and LINEAR16.")
        return tts.SynthesizeSpeechResponse(audio_content=audio)


def main() -> None:
    """Serve the fake on a fixed port, for a manual end-to-end run."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50052)
    args = parser.parse_args()
    server = FakeTtsServer().start(args.port)
    print(f"fake Google Text-to-Speech on {server.host} (GOOGLE_TTS_EMULATOR_HOST)", flush=True)
    server.serve_until_interrupted()


if __name__ == "__main__":
    main()
