"""Google Cloud Speech-to-Text v1 for the line: streaming with rotation, reconnects and fallbacks.

Modules, each depending only on those above it:
- `rules`: what a stream's end calls for, backoff, when to rotate (pure);
- `config`: `GoogleSttConfig` and the recognition configs built from it;
- `timeline`: the call's audio on one timeline, the cut, de-duplication across streams (pure);
- `single_request`: `recognize` requests for VAD-cut utterances when streaming cannot be had;
- `streaming`: one call's session: the queue, the streams in turn, rotation, reconnects, close;
- `engine`: `GoogleSttEngine`, shared by the calls of a process: credentials, clients, endpoints.
"""

from telephony.stt.google.engine import GoogleSttEngine

__all__ = ["GoogleSttEngine"]
