from twilio.request_validator import RequestValidator

from telephony.security import signatures, tokens

KEY = "secret"


def test_stream_url_follows_the_public_scheme():
    assert (
        signatures.stream_url("https://line.example.com") == "wss://line.example.com/twilio/stream/"
    )
    assert signatures.stream_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000/twilio/stream/"


def test_signature_is_checked_with_and_without_trailing_slash():
    url = "wss://line.example.com/twilio/stream/"
    signed_without = RequestValidator(KEY).compute_signature(url.rstrip("/"), {})
    assert signatures.valid_signature(KEY, url, {}, signed_without)
    assert not signatures.valid_signature(KEY, url, {}, "forged")
    assert not signatures.valid_signature(KEY, url, {}, None)
    assert not signatures.valid_signature("other", url, {}, signed_without)


def test_token_binds_call_and_expires():
    token = tokens.make_stream_token(KEY, "CA1", now=1000, ttl_s=60)
    assert tokens.check_stream_token(KEY, "CA1", token, now=1059) is None
    assert tokens.check_stream_token(KEY, "CA1", token, now=1061) == "stream token expired"
    assert "does not match" in tokens.check_stream_token(KEY, "CA2", token, now=1000)
    assert "does not match" in tokens.check_stream_token("x", "CA1", token, now=1000)
    assert tokens.check_stream_token(KEY, "CA1", None, now=1000) == "missing stream token"
    assert tokens.check_stream_token(KEY, "CA1", "garbage", now=1000) == "malformed stream token"
    forged_expiry = "9999." + token.partition(".")[2]
    assert "does not match" in tokens.check_stream_token(KEY, "CA1", forged_expiry, now=1000)


def test_tokens_are_single_use():
    used = tokens.UsedTokens()
    token = tokens.make_stream_token(KEY, "CA1", now=1000, ttl_s=60)
    checked = tokens.read_stream_token(KEY, "CA1", token, now=1000)
    assert used.spend(checked, now=1000) is True
    assert used.spend(checked, now=1001) is False


def test_a_token_has_one_spelling_only():
    """The digest covers the expiry as a number: "01060." is the same token as "1060."."""
    token = tokens.make_stream_token(KEY, "CA1", now=1000, ttl_s=60)
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
        assert tokens.check_stream_token(KEY, "CA1", other, now=1000) == (
            "malformed stream token"
        ), other
    assert tokens.check_stream_token(KEY, "CA1", token, now=1000) is None


def test_a_token_is_spent_under_what_its_digest_covers():
    checked = tokens.read_stream_token(
        KEY, "CA1", tokens.make_stream_token(KEY, "CA1", now=1000, ttl_s=60), now=1000
    )
    assert checked == tokens.StreamToken(call_sid="CA1", expires=1060)
    assert checked.covered == "CA1.1060"
    used = tokens.UsedTokens()
    assert used.spend(tokens.StreamToken(call_sid="CA1", expires=1060), now=1000)
    assert not used.spend(checked, now=1000)  # the same call and expiry: the same token
    assert used.spend(tokens.StreamToken(call_sid="CA2", expires=1060), now=1000)
