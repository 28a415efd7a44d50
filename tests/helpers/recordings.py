"""Recorded caller audio for the tests that need a recognizer to hear real words.

espeak's rendering of a sentence differs a little from run to run, and tiny.en's transcript of it
differs with it ("the status of my order" one run, "a look at the murder" the next), so tests
that assert words use this fixed recording: espeak-ng's en-us rendering of the sentence.
"""

from pathlib import Path

from telephony.testing.caller import read_wav_as_ulaw

DATA = Path(__file__).resolve().parents[1] / "data"
ORDER_STATUS_TEXT = "I would like to check the status of my order"


def order_status_ulaw() -> bytes:
    """8 kHz mu-law of ORDER_STATUS_TEXT (2.1 s)."""
    return read_wav_as_ulaw(DATA / "order-status.wav")
