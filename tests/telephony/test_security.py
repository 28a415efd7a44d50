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
    checked = security.read_stream_token(KEY, "CA1", token, now=1000)
    assert used.spend(checked, now=1000) is True
    assert used.spend(checked, now=1001) is False


def test_a_token_has_one_spelling_only():
    """The digest covers the expiry as a number: "01060." is the same token as "1060."."""
    token = security.make_stream_token(KEY, "CA1", now=1000, ttl_s=60)
    expires, _, digest = token.partition(".")
    assert expires == "1060"
    respelled = [
        f"0{expires}.{digest}",
        f"00{expires}.{digest}",
        f"{expires}.{digest.upper()}",
        f"+{expires}.{digest}",
        f" {expires}.{digest}",
        f"{expires}.{digest} ",
        f"{expires}.{digest}\n",
        f"{expires}.0{digest}",
        f"{expires}_0.{digest}",
    ]
    for other in respelled:
        assert security.check_stream_token(KEY, "CA1", other, now=1000) == (
            "malformed stream token"
        ), other
    assert security.check_stream_token(KEY, "CA1", token, now=1000) is None


def test_a_token_is_spent_under_what_its_digest_covers():
    checked = security.read_stream_token(
        KEY, "CA1", security.make_stream_token(KEY, "CA1", now=1000, ttl_s=60), now=1000
    )
    assert checked == security.StreamToken(call_sid="CA1", expires=1060)
    assert checked.covered == "CA1.1060"
    used = security.UsedTokens()
    assert used.spend(security.StreamToken(call_sid="CA1", expires=1060), now=1000)
    assert not used.spend(checked, now=1000)  # the same call and expiry: the same token
    assert used.spend(security.StreamToken(call_sid="CA2", expires=1060), now=1000)
