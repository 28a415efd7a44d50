"""A simulated Twilio caller: dials our webhook and streams a call exactly as Twilio would.

Two layers. The pure one models what Twilio does and says, and is tested without sockets or
sleeps: the message shapes (`messages`), the frames and when each is due (`frames`), Twilio's
playback buffer with its marks (`playback`), the TwiML it reads (`twiml`) and the report of a
call (`report`). The asyncio one places calls: `dial` POSTs the signed voice webhook and the
stream status callbacks (`webhooks`), follows the TwiML to the `<Stream>` URL and speaks the
Media Streams protocol over `websockets` (`stream`), paced by one shared 20 ms `Ticker`
(`ticker`). `audio` renders or reads what a caller says and saves what it heard.

It has to stay cheap: benchmarks drive 100 calls from one core. So every call in a process
paces itself on one shared ticker (one timer for all calls, not one per call), outgoing
media JSON is formatted from a template around base64 payloads encoded once per audio clip,
compression is off (Twilio does not compress), and `run` picks uvloop when it is installed.

The names below are the simulator's public API; import them from `telephony.testing.caller`.
"""

from telephony.testing.caller.audio import (
    greeting_s,
    read_wav_as_ulaw,
    speech_audio,
    write_ulaw_wav,
)
from telephony.testing.caller.dial import USER_AGENT, dial, dial_many, run
from telephony.testing.caller.frames import FRAME_S, encode_frames, frames_due
from telephony.testing.caller.messages import (
    connected_message,
    dtmf_message,
    mark_message,
    media_message,
    new_sid,
    start_message,
    stop_message,
)
from telephony.testing.caller.playback import TwilioPlayback
from telephony.testing.caller.report import (
    CLEAN_CLOSE_CODES,
    CallError,
    CallReport,
    ProgressCallback,
    calls_summary,
    progress_line,
)
from telephony.testing.caller.ticker import Ticker, shared_ticker
from telephony.testing.caller.twiml import ConnectStream, parse_connect_stream
from telephony.testing.caller.webhooks import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_FROM,
    DEFAULT_TO,
    SIGNATURE_HEADER,
    VOICE_PATH,
)

__all__ = [
    "CLEAN_CLOSE_CODES",
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_FROM",
    "DEFAULT_TO",
    "FRAME_S",
    "SIGNATURE_HEADER",
    "USER_AGENT",
    "VOICE_PATH",
    "CallError",
    "CallReport",
    "ConnectStream",
    "ProgressCallback",
    "Ticker",
    "TwilioPlayback",
    "calls_summary",
    "connected_message",
    "dial",
    "dial_many",
    "dtmf_message",
    "encode_frames",
    "frames_due",
    "greeting_s",
    "mark_message",
    "media_message",
    "new_sid",
    "parse_connect_stream",
    "progress_line",
    "read_wav_as_ulaw",
    "run",
    "shared_ticker",
    "speech_audio",
    "start_message",
    "stop_message",
    "write_ulaw_wav",
]
