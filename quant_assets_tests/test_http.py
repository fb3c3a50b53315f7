"""The polite HTTP client against a real server on loopback: retries, Retry-After, throttling
inside a 200, timeouts, bad payloads, secrets, the rate limit and the on-disk cache."""

import email.utils
import json
import time

import pytest

from quant_assets.lib import http
from quant_assets_tests.http_fake import Reply

KEY = "s3cr3t-key/with+chars"
FAST = http.RetryPolicy(max_attempts=4, backoff_s=0.01, max_backoff_s=0.05)


def client(server, **kw):
    kw.setdefault("retry", FAST)
    kw.setdefault("calls_per_minute", 60_000)
    kw.setdefault("secret_params", ("apikey",))
    return http.PoliteClient(server.url, **kw)


def test_429_with_retry_after_waits_that_long_then_succeeds(scripted_http):
    scripted_http.script("/q", [Reply(429, "{}", {"Retry-After": "1"}), Reply(200, '[{"ok": 1}]')])
    sleeps = []
    with client(scripted_http, sleep=lambda s: (sleeps.append(s), time.sleep(0))) as c:
        assert c.get_json("/q", {"apikey": KEY}) == [{"ok": 1}]
        assert c.stats.retries == 1 and c.stats.throttled == 1
    assert sleeps and sleeps[0] == pytest.approx(1.0)
    assert scripted_http.calls("/q") == 2


def test_retry_after_as_http_date():
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= http.retry_after_seconds(later) <= 31
    assert http.retry_after_seconds("garbage") is None
    assert http.retry_after_seconds("7") == 7.0


def test_429_without_retry_after_backs_off_exponentially_and_gives_up_naming_endpoint(scripted_http):
    scripted_http.script("/q", [Reply(429, "{}")])
    sleeps = []
    with client(scripted_http, sleep=sleeps.append) as c:
        with pytest.raises(http.RateLimited) as err:
            c.get_json("/q", {"symbol": "AAPL", "apikey": KEY}, context="AAPL insider_trades")
    assert scripted_http.calls("/q") == 4
    assert len(sleeps) == 3 and sleeps[0] < sleeps[1] < sleeps[2]
    msg = str(err.value)
    assert "AAPL insider_trades" in msg and "/q" in msg and "symbol=AAPL" in msg
    assert KEY not in msg and "apikey=***" in msg


def test_limit_message_inside_a_200_is_retried(scripted_http):
    limit = json.dumps({"Error Message": "Limit Reach . Please upgrade your plan"})
    scripted_http.script("/q", [Reply(200, limit), Reply(200, "[1, 2]")])
    throttled = lambda r: "Limit Reach" in r.text  # noqa: E731
    with client(scripted_http, throttled=throttled, sleep=lambda s: None) as c:
        assert c.get_json("/q") == [1, 2]
        assert c.stats.throttled == 1


def test_500_then_success(scripted_http):
    scripted_http.script("/q", [Reply(500, "oops"), Reply(503, "busy"), Reply(200, '{"a": 1}')])
    with client(scripted_http, sleep=lambda s: None) as c:
        assert c.get_json("/q") == {"a": 1}
        assert c.stats.retries == 2


def test_timeout_is_retried_then_reported(scripted_http):
    scripted_http.script("/slow", [Reply(200, "[]", delay_s=0.5)])
    with client(scripted_http, timeout_s=0.1, retry=http.RetryPolicy(max_attempts=2, backoff_s=0.01), sleep=lambda s: None) as c:
        with pytest.raises(http.HttpError, match=r"timed out") as err:
            c.get_json("/slow", context="NVDA prices")
    assert "NVDA prices" in str(err.value) and err.value.status is None


def test_malformed_json_is_a_clear_error_with_the_secret_masked(scripted_http):
    scripted_http.script("/q", [Reply(200, f"<html>bad gateway {KEY}</html>", content_type="text/html")])
    with client(scripted_http) as c:
        with pytest.raises(http.BadPayload) as err:
            c.get_json("/q", {"apikey": KEY}, context="TSLA etf_exposure")
    msg = str(err.value)
    assert "TSLA etf_exposure" in msg and "not JSON" in msg and KEY not in msg


def test_client_errors_are_not_retried_and_the_key_is_masked(scripted_http):
    scripted_http.script("/q", [Reply(401, json.dumps({"Error Message": f"Invalid API KEY {KEY}"}))])
    with client(scripted_http) as c:
        with pytest.raises(http.HttpError) as err:
            c.get_json("/q", {"apikey": KEY})
    assert err.value.status == 401 and scripted_http.calls("/q") == 1
    assert KEY not in str(err.value) and "Invalid API KEY ***" in str(err.value)


def test_rate_limiter_spaces_calls_to_the_allowed_rate():
    t = [0.0]
    limiter = http.RateLimiter(120, burst=1, clock=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s))
    for _ in range(11):
        limiter.acquire()
    # 120/minute = one every 0.5 s: the 11th call cannot happen before 5 s.
    assert t[0] == pytest.approx(5.0)


def test_rate_limited_client_reaches_most_of_the_allowed_throughput(scripted_http):
    scripted_http.script("/q", [Reply(200, "[]")])
    with client(scripted_http, calls_per_minute=1200, max_concurrency=4) as c:
        t0 = time.monotonic()
        for _ in range(40):
            c.get_json("/q")
        elapsed = time.monotonic() - t0
    # 1200/min = 20/s; 40 calls with a burst of 10 need at least 1.5 s, and not much more.
    assert 1.4 <= elapsed <= 3.0


def test_cache_round_trip_and_stats(tmp_path):
    cache = http.ResponseCache(tmp_path, "fmp")
    key = ("insider_trades", "AAPL", "2022-01-01", "2024-12-31")
    assert cache.get(key) is None
    cache.put(key, b"[1]")
    assert cache.get(key) == b"[1]"
    assert cache.stats.hits == 1 and cache.stats.misses == 1 and cache.stats.hit_rate == 0.5
    assert cache.entries() == (1, 3)
    assert cache.path(key).parent.name == "insider_trades"
    assert not list(cache.root.rglob("*.tmp"))


def test_the_response_cache_on_s3_is_shared_by_every_client(s3_bucket):
    """An ``s3://`` cache (the distributed path): what one machine fetched, another reads back."""
    from dagster_aws.s3 import S3Resource

    from quant_assets.defs.vendors import HttpClientResource

    endpoint, bucket, client = s3_bucket
    url = f"s3://{bucket}/http_cache"
    first = HttpClientResource(cache_dir=url, s3=S3Resource(endpoint_url=endpoint)).cache("fmp")
    key = ("insider_trades", "AAPL", "2024-01-01", "2024-12-31")
    assert first.get(key) is None
    first.put(key, b'[{"a": 1}]')
    assert first.root == f"{url}/fmp" and first.path(key).startswith(f"{url}/fmp/insider_trades/")
    objects = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="http_cache/").get("Contents", [])]
    assert len(objects) == 1 and objects[0].startswith("http_cache/fmp/insider_trades/")

    second = HttpClientResource(cache_dir=url, s3=S3Resource(endpoint_url=endpoint)).cache("fmp")
    assert second.get(key) == b'[{"a": 1}]'
    assert (second.stats.hits, second.stats.misses) == (1, 0)
    assert second.entries() == (1, 10)
    assert HttpClientResource(cache_dir=url, s3=S3Resource(endpoint_url=endpoint)).cache("binance").entries() == (0, 0)
    assert second.clear() == 1
    assert second.entries() == (0, 0) and second.get(key) is None


def test_a_trickling_server_cannot_hold_a_request_past_its_deadline(scripted_http):
    # 40 bytes, one every 0.5 s: 20 s if every read got its own timeout.
    scripted_http.script("/trickle", [Reply(200, "[" + ",".join(["1"] * 19) + "]", trickle_s=0.5)])
    with client(scripted_http, timeout_s=1.0, retry=http.RetryPolicy(max_attempts=1)) as c:
        t0 = time.monotonic()
        with pytest.raises(http.HttpError, match=r"timed out after 1s \(deadline per request") as err:
            c.get_json("/trickle", {"apikey": KEY}, context="AAPL prices")
        elapsed = time.monotonic() - t0
    assert elapsed < 1.0 + http.DEADLINE_SLACK_S + 0.2, elapsed
    assert "AAPL prices" in str(err.value) and err.value.status is None


def test_a_slow_but_steady_response_within_the_deadline_arrives_whole(scripted_http):
    scripted_http.script("/steady", [Reply(200, "[1,2]", trickle_s=0.05)])
    with client(scripted_http, timeout_s=2.0) as c:
        assert c.get_json("/steady") == [1, 2]


def test_the_fetch_budget_stops_retries_that_would_overrun_it(scripted_http):
    scripted_http.script("/busy", [Reply(503, "busy", {"Retry-After": "5"})])
    sleeps = []
    with client(scripted_http, budget_s=2.0, sleep=sleeps.append, retry=http.RetryPolicy(max_attempts=10)) as c:
        with pytest.raises(http.BudgetSpent, match=r"budget of 2s is spent .*next wait 5.0s") as err:
            c.get_json("/busy", {"apikey": KEY}, context="KO insider_trades")
    assert sleeps == [] and scripted_http.calls("/busy") == 1  # the 5 s Retry-After would overrun 2 s: no wait
    assert "KO insider_trades" in str(err.value) and KEY not in str(err.value)


@pytest.mark.parametrize(
    "echo",
    [
        KEY,
        "s3cr3t-key%2Fwith%2Bchars",  # percent-encoded, upper-case hex
        "s3cr3t-key%2fwith%2bchars",  # lower-case hex
        "s3cr3t-key/with%2Bchars",  # '/' left alone
        "s3cr3t-key/with chars",  # '+' read as a space
    ],
)
def test_the_key_is_masked_in_every_spelling_a_server_echoes(scripted_http, echo):
    scripted_http.script("/q", [Reply(401, json.dumps({"Error Message": f"Invalid API KEY {echo} for /q"}))])
    with client(scripted_http) as c:
        with pytest.raises(http.HttpError) as err:
            c.get_json("/q", {"apikey": KEY})
    text = str(err.value)
    assert "Invalid API KEY *** for /q" in text
    for form in http.secret_spellings(KEY):
        assert form not in text, form
