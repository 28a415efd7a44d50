"""The voice webhook's form, as Twilio POSTs it when a call rings."""

from __future__ import annotations

from telephony.testing.caller.webhooks import voice_form


def test_voice_form_has_twilios_fields_for_a_ringing_inbound_call() -> None:
    form = voice_form(
        account_sid="AC1", call_sid="CA1", from_number="+15005550006", to_number="+15005550001"
    )
    assert form == {
        "AccountSid": "AC1",
        "ApiVersion": "2010-04-01",
        "CallSid": "CA1",
        "CallStatus": "ringing",
        "Called": "+15005550001",
        "Caller": "+15005550006",
        "Direction": "inbound",
        "From": "+15005550006",
        "To": "+15005550001",
    }
