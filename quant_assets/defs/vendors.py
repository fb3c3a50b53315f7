"""Vendor API resources: polite HTTP (rate limit, deadlines, retries, the permanent response
cache) and Financial Modeling Prep for the smart-money group. Secrets come from the environment
and are masked in every message."""

from typing import Any, Optional

from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from pydantic import Field

from quant_assets.defs.resources import cached_store, env_or_default
from quant_assets.lib import http, settings


class HttpClientResource(ConfigurableResource):
    """Polite HTTP access to vendor APIs (httpx): a rate limit per client, bounded concurrency,
    timeouts, retries with backoff that honour ``Retry-After`` on 429/5xx, and a permanent
    response cache (``QUANT_HTTP_CACHE_URL``: a folder, default ``$QUANT_DATA_DIR/http_cache``,
    or an ``s3://`` location that every machine running steps shares; see
    ``quant_assets.lib.http``).
    Secrets (API keys) are passed by the caller from the environment and masked in every
    message."""

    calls_per_minute: int = Field(default=http.CALLS_PER_MINUTE, gt=0, description="Most requests per minute to one vendor.")
    max_concurrency: int = Field(default=http.MAX_CONCURRENCY, ge=1, description="Most requests in flight at once.")
    timeout_s: float = Field(
        default=http.TIMEOUT_S, gt=0, description="Deadline of each request, seconds: connecting and every read together."
    )
    max_attempts: int = Field(default=http.RetryPolicy.max_attempts, ge=1, description="Tries per request (1 = no retry).")
    cache_dir: str = Field(
        default="",
        description="Response cache: a folder or an s3:// URL; empty = $QUANT_DATA_DIR/http_cache.",
    )
    s3: Optional[S3Resource] = Field(default=None, description="S3 client settings, for an s3:// cache.")

    def cache_url(self) -> str:
        return self.cache_dir or str(settings.data_dir() / "http_cache")

    def client(self, base_url: str, *, secret_params=(), throttled=None, transport=None, headers=None):
        from quant_assets.lib.http import PoliteClient, RetryPolicy

        return PoliteClient(
            base_url,
            calls_per_minute=self.calls_per_minute,
            max_concurrency=self.max_concurrency,
            timeout_s=self.timeout_s,
            retry=RetryPolicy(max_attempts=self.max_attempts),
            secret_params=secret_params,
            throttled=throttled,
            transport=transport,
            headers=headers,
        )

    def cache(self, namespace: str):
        from quant_assets.lib.http import ResponseCache

        url = self.cache_url()
        if url.startswith("s3://"):
            return ResponseCache(url, namespace, store=cached_store(url, self.s3))
        return ResponseCache(url, namespace)

    def shared_locations(self) -> dict[str, Any]:
        return {"http_cache": self.cache_url()}


class FmpResource(ConfigurableResource):
    """Financial Modeling Prep (stable API) for the smart-money group.

    With ``FMP_API_KEY`` set, requests go to the real vendor (``FMP_BASE_URL``, default
    https://financialmodelingprep.com/stable); the key is read through ``dagster.EnvVar`` and
    masked in every message. Without a key, the embedded default is the simulated FMP
    (``quant_assets.simulate.fmp``), served in-process through an httpx transport -- the same
    client, rate limiter, retries and response cache run either way. Responses are cached for
    good under ``<cache_dir>/fmp`` (real vendor) or ``<cache_dir>/fmp-sim/<world>`` (simulated).
    """

    http: HttpClientResource
    api_key: str = Field(default="", description="FMP API key (from FMP_API_KEY); empty = use the simulated FMP.")
    base_url: str = Field(
        default="",
        description="FMP stable API base URL (FMP_BASE_URL); empty = the real vendor with a key, the simulator without.",
    )
    sim_seed: int = Field(default=7, description="Seed of the simulated FMP (used only when it is the source).")

    @classmethod
    def from_environment(cls, s3: S3Resource | None = None) -> "FmpResource":
        return cls(
            http=HttpClientResource(cache_dir=env_or_default("QUANT_HTTP_CACHE_URL", ""), s3=s3 or S3Resource()),
            api_key=env_or_default("FMP_API_KEY", ""),
            base_url=env_or_default("FMP_BASE_URL", ""),
        )

    def simulated(self, source: str = "auto") -> bool:
        """Whether requests go to the simulated FMP: ``source`` "simulated", or "auto" with neither
        a key nor a base URL configured."""
        if source not in ("auto", "simulated", "fmp"):
            raise ValueError(f"source must be auto, simulated or fmp, got {source!r}")
        return source == "simulated" or (source == "auto" and not self.api_key and not self.base_url)

    def describe(self, source: str = "auto") -> str:
        """Where requests go, for metadata (never the key)."""
        from quant_assets.lib.sources.fmp import FMP_BASE_URL

        if self.simulated(source):
            return f"simulated FMP (seed {self.sim_seed}, in-process)"
        return self.base_url or FMP_BASE_URL

    def cache(self, source: str = "auto"):
        from quant_assets.simulate.fmp import FmpSimSpec

        if self.simulated(source):
            return self.http.cache(f"fmp-sim/{FmpSimSpec(seed=self.sim_seed).fingerprint()}")
        return self.http.cache("fmp")

    def client(
        self, *, calls_per_minute: float, max_concurrency: int, page_sizes=None, source: str = "auto", budget_s: float | None = None
    ):
        """An FMP client for ``source`` (close it with ``client.http.close()``); ``budget_s``: the
        most seconds its whole fetch may take, retries and waits included."""
        from quant_assets.lib.http import PoliteClient, RetryPolicy
        from quant_assets.lib.sources import fmp
        from quant_assets.simulate.fmp import SIM_BASE_URL, FmpSimSpec, SimulatedFmp

        simulated = self.simulated(source)
        transport = None
        base_url = self.base_url or fmp.FMP_BASE_URL
        if simulated:
            transport = SimulatedFmp(FmpSimSpec(seed=self.sim_seed)).transport()
            base_url = SIM_BASE_URL
        http = PoliteClient(
            base_url,
            calls_per_minute=calls_per_minute,
            max_concurrency=max_concurrency,
            timeout_s=self.http.timeout_s,
            retry=RetryPolicy(max_attempts=self.http.max_attempts),
            secret_params=fmp.SECRET_PARAMS,
            throttled=fmp.is_limit_message,
            transport=transport,
            budget_s=budget_s,
        )
        return fmp.FmpClient(
            http,
            self.cache(source),
            api_key=None if simulated else (self.api_key or None),
            # The vendor's own host needs a key; another base URL (a proxy, a test server) may not.
            require_key=not simulated and base_url == fmp.FMP_BASE_URL,
            max_workers=max_concurrency,
            page_sizes=page_sizes,
        )

    def shared_locations(self) -> dict[str, Any]:
        return self.http.shared_locations()
