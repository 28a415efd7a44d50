from twilio.request_validator import RequestValidator

from telephony import security

KEY = "secret"


def test_stream_url_follows_the_public_scheme():
    assert (
        security.stream_url("https://line.example.com") == "wss://line.example.com/twilio/stream/"
    )
    assert security.stream_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000/twilio/stream/"


def test_signature_is_checked_with_and_without_trailing_slash():
    url = "wss://line.example.com/twilio/stream/"
    signed_without = RequestValidator(KEY).compute_signature(url.rstrip("/"), {})
    assert security.valid_signature(KEY, url, {}, signed_without)
    assert not security.valid_signature(KEY, url, {}, "forged")
    assert not security.valid_signature(KEY, url, {}, None)
    assert not security.valid_signature("other", url, {}, signed_without)


def test_token_binds_call_and_expires():
    token = security.make_stream_token(KEY, "CA1", now=1000, ttl_s=60)
    assert security.check_stream_token(KEY, "CA1", token, now=1059) is None
    assert security.check_stream_token(KEY, "CA1", token, now=1061) == "stream token expired"
    assert "does not match" in security.check_stream_token(KEY, "CA2", token, now=1000)
    assert "does not match" in security.check_stream_token("x", "CA1", token, now=1000)
    assert security.check_stream_token(KEY, "CA1", None, now=1000) == "missing stream token"
    assert security.check_stream_token(KEY, "CA1", "garbage", now=1000) == "malformed stream token"
    forged_expiry = "9999." + token.partition(".")[2]
    assert "does not match" in security.check_stream_token(KEY, "CA1", forged_expiry, now=1000)


def test_tokens_are_single_use():
    used = security.UsedTokens()
    token = security.make_stream_token(KEY, "CA1", now=1000, ttl_s=60)
    assert used.spend(token, now=1000) is True
    assert used.spend(token, now=1001) is False
