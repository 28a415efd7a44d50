"""The HTTP side of Twilio: the signed voice webhook and the stream status callbacks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
from twilio.request_validator import RequestValidator

from telephony.testing.caller.report import CallReport

VOICE_PATH = "/twilio/voice/"
SIGNATURE_HEADER = "X-Twilio-Signature"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_FROM = "+15005550006"
DEFAULT_TO = "+15005550001"


def voice_form(
    *, account_sid: str, call_sid: str, from_number: str, to_number: str
) -> dict[str, str]:
    """Return the form fields Twilio POSTs to the voice webhook when a call rings."""
    return {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Called": to_number,
        "Caller": from_number,
        "Direction": "inbound",
        "From": from_number,
        "To": to_number,
    }


async def post_signed(
    http: aiohttp.ClientSession, validator: RequestValidator, url: str, params: dict[str, str]
) -> tuple[int, str]:
    """POST form parameters signed as Twilio signs its webhooks; return status and body."""
    headers = {SIGNATURE_HEADER: validator.compute_signature(url, params)}
    async with http.post(url, data=params, headers=headers, allow_redirects=False) as response:
        return response.status, await response.text()


class StatusCallbacks:
    """The stream status callbacks Twilio POSTs (stream-started, stream-stopped)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        validator: RequestValidator,
        url: str,
        report: CallReport,
        account_sid: str,
    ) -> None:
        self._http, self._validator, self._url = http, validator, url
        self._report, self._account_sid = report, account_sid
        self._tasks: list[asyncio.Task[None]] = []

    def post(self, event: str) -> None:
        """Send one callback in the background (Twilio does not wait for it either)."""
        if self._url:
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    self._post(event), name=f"caller-status-{event}-{self._report.call_sid}"
                )
            )

    async def wait(self) -> None:
        """Wait for every callback sent so far."""
        await asyncio.gather(*self._tasks)

    async def _post(self, event: str) -> None:
        report = self._report
        params = {
            "AccountSid": self._account_sid,
            "CallSid": report.call_sid,
            "StreamSid": report.stream_sid,
            "StreamName": report.stream_sid,
            "StreamEvent": event,
            "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        try:
            status, _body = await post_signed(self._http, self._validator, self._url, params)
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            report.status_callbacks[event] = f"{type(exc).__name__}: {exc}"
        else:
            report.status_callbacks[event] = status
