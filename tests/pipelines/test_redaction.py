import logging

import pytest

from pipelines.redaction import (
    RedactSecretsFilter,
    is_redacted,
    is_secret_parameter,
    redact_query,
    redact_text,
    redact_url,
    restore_masked,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://ci:p%40ss@example.com/hook", "https://*****:*****@example.com/hook"),
        ("https://glpat-abcdef@example.com/", "https://*****@example.com/"),
        ("http://user:pa@ss@example.com:8080/x", "http://*****:*****@example.com:8080/x"),
        ("http://u:p@[2606:4700::1]/x", "http://*****:*****@[2606:4700::1]/x"),
        (
            "https://example.com/h?page=2&private_token=abc&apiToken=def&API_KEY=g&x=1#frag",
            "https://example.com/h?page=2&private_token=[FILTERED]&apiToken=[FILTERED]"
            "&API_KEY=[FILTERED]&x=1#frag",
        ),
        (
            "https://example.com/api?code=azure-function-key",
            "https://example.com/api?code=[FILTERED]",
        ),
        ("https://example.com/p@th?token=", "https://example.com/p@th?token="),
        ("https://example.com/hook", "https://example.com/hook"),
        ("not a URL ?password=hunter2", "not a URL ?password=[FILTERED]"),
    ],
)
def test_redact_url_masks_credentials_and_secret_values(url, shown):
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # masking twice changes nothing
    assert is_redacted(shown) == (shown != url)
    assert restore_masked(shown, url) == url


def test_secret_parameter_names_follow_gitlabs_filter_rule():
    secret = ["private_token", "access_token", "job_token", "apiToken", "token", "api_key"]
    secret += ["X-Api-Key", "password", "new_password", "client_secret", "signature", "sig"]
    plain = ["page", "per_page", "ref", "status", "keys", "tokens_count", "name", "sha"]
    assert [name for name in secret if not is_secret_parameter(name)] == []
    assert [name for name in plain if is_secret_parameter(name)] == []
    assert redact_query("page=2&private%5Ftoken=x") == "page=2&private%5Ftoken=[FILTERED]"


def test_masked_parts_come_back_only_for_the_same_scheme_and_host():
    stored = "https://ci:secret@example.com/hook?token=abc&page=1"
    shown = redact_url(stored)
    assert restore_masked(shown, stored) == stored
    # The path may change; credentials stay with their host.
    moved = shown.replace("/hook", "/v2/hook")
    assert restore_masked(moved, stored) == stored.replace("/hook", "/v2/hook")
    for elsewhere in (
        shown.replace("example.com", "attacker.example"),
        shown.replace("https://", "http://"),
        shown.replace("example.com", "example.com:8443"),
    ):
        assert restore_masked(elsewhere, stored) == elsewhere
        assert is_redacted(elsewhere)


def test_redact_text_masks_request_lines_referrers_and_product_secrets():
    line = (
        '127.0.0.1 - - "GET /distelli/root/apps/web/events?apiToken=phk_AbC123xyz456&page=2 '
        'HTTP/1.1" 200 2 "https://ops:hunter2@ci.example/?private_token=glpat-123" "curl"'
        " signing whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    )
    masked = redact_text(line)
    for secret in ("phk_AbC123xyz456", "hunter2", "ops:", "glpat-123", "MfKQ9r8GKYqr"):
        assert secret not in masked
    assert "apiToken=[FILTERED]&page=2" in masked
    assert "https://*****:*****@ci.example/" in masked


def test_log_filter_masks_the_formatted_message():
    record = logging.LogRecord(
        "gunicorn.access", logging.INFO, __file__, 1, "%(r)s %(s)s", None, None
    )
    record.args = {"r": "GET /api/v4/projects?private_token=phk_secretvalue1 HTTP/1.1", "s": 200}
    assert RedactSecretsFilter().filter(record)
    assert record.getMessage() == "GET /api/v4/projects?private_token=[FILTERED] HTTP/1.1 200"
