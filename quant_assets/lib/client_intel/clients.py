"""The client book: who the clients are and which segment each belongs to."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from quant_assets.lib.client_intel.spec import HEDGER, MEAN_REVERTER, SEGMENT_CODE, SEGMENTS, TREND_FOLLOWER, TREND_SETTER, WorldSpec

CLIENTS_SCHEMA: dict[str, pl.DataType] = {
    "client_id": pl.String(),
    "name": pl.String(),
    "desk": pl.String(),
    "region": pl.String(),
    "segment": pl.String(),
    "onboarding_date": pl.Date(),
}

_FIRST = (
    "Northbridge", "Blue Heron", "Silverlake", "Cobalt", "Granite", "Harbor", "Juniper", "Kestrel",
    "Larkspur", "Meridian", "Nightingale", "Oakmont", "Pinecrest", "Quarry", "Redwood", "Saltmarsh",
    "Tidewater", "Upland", "Vantage", "Westgate", "Alder", "Brightwater", "Cedar Point", "Driftwood",
    "Elmstead", "Foxglove", "Glenmore", "Highfield", "Ironwood", "Jasper", "Kingsbury", "Lindenhall",
    "Mistral", "Northwind", "Orchard", "Pelham", "Queensgate", "Riverside", "Stonebridge", "Thornfield",
)  # fmt: skip
_SECOND = (
    "Capital", "Asset Management", "Partners", "Investments", "Advisors", "Global Macro", "Trading",
    "Fund Management", "Holdings", "Treasury", "Group", "Securities",
)  # fmt: skip
REGIONS = ("EMEA", "Americas", "APAC")
# Desks by segment: corporates hedge, funds follow or set trends, prop desks revert.
_DESKS = {
    TREND_FOLLOWER: (("Hedge Funds", 0.6), ("Real Money", 0.25), ("Prop Trading", 0.15)),
    MEAN_REVERTER: (("Prop Trading", 0.55), ("Hedge Funds", 0.30), ("Banks", 0.15)),
    HEDGER: (("Corporates", 0.70), ("Real Money", 0.20), ("Banks", 0.10)),
    TREND_SETTER: (("Hedge Funds", 0.65), ("Real Money", 0.20), ("Prop Trading", 0.15)),
}


@dataclasses.dataclass
class Book:
    """The clients table and the integer segment code of each client (row order)."""

    frame: pl.DataFrame
    segment_codes: np.ndarray


def client_ids(n: int) -> list[str]:
    """``ACME_FX_001`` ... : three digits, more when the book needs them."""
    width = max(3, len(str(n)))
    return [f"ACME_FX_{i:0{width}d}" for i in range(1, n + 1)]


def allocate_segments(n: int, mix: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Exactly ``round(n * share)`` clients per segment (largest remainder), in random order."""
    shares = np.array([mix[s] for s in SEGMENTS])
    exact = shares * n
    counts = np.floor(exact).astype(np.int64)
    short = n - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:short]] += 1
    codes = np.repeat(np.arange(len(SEGMENTS)), counts)
    return rng.permutation(codes)


def build_clients(spec: WorldSpec) -> Book:
    """One row per client: id, name, desk, region, segment, onboarding date (always before the
    history starts, 1 month to 6 years earlier, so every client trades over the whole history)."""
    rng = np.random.default_rng([spec.seed, 3])
    n = spec.n_clients
    codes = allocate_segments(n, spec.segment_mix, rng)
    combos = len(_FIRST) * len(_SECOND)
    picks = rng.permutation(max(combos, n))[:n]
    names = []
    for k, p in enumerate(picks):
        base = f"{_FIRST[(p % combos) // len(_SECOND)]} {_SECOND[(p % combos) % len(_SECOND)]}"
        # Beyond the word list's combinations the book gets numbered funds ("... Fund 2").
        names.append(base if p < combos else f"{base} Fund {p // combos + 1}")
    desks = np.empty(n, dtype=object)
    u = rng.random(n)
    for code, seg in enumerate(SEGMENTS):
        options = _DESKS[seg]
        cum = np.cumsum([w for _, w in options])
        idx = np.minimum(np.searchsorted(cum, u, side="right"), len(options) - 1)
        mask = codes == code
        desks[mask] = np.array([d for d, _ in options], dtype=object)[idx[mask]]
    regions = np.array(REGIONS, dtype=object)[rng.choice(3, size=n, p=(0.45, 0.35, 0.20))]
    days_before = rng.integers(30, 6 * 365, size=n)
    onboarding = np.datetime64(spec.start) - days_before.astype("timedelta64[D]")
    frame = pl.DataFrame(
        {
            "client_id": client_ids(n),
            "name": names,
            "desk": desks.tolist(),
            "region": regions.tolist(),
            "segment": [SEGMENTS[c] for c in codes],
            "onboarding_date": onboarding,
        },
        schema=CLIENTS_SCHEMA,
    )
    return Book(frame=frame, segment_codes=codes.astype(np.int64))


def segment_codes(clients: pl.DataFrame) -> np.ndarray:
    """Integer segment code per row of ``clients``; an unknown segment is an error naming it."""
    unknown = sorted(set(clients["segment"].unique().to_list()) - set(SEGMENTS))
    if unknown:
        raise ValueError(f"client_intel/clients has unknown segment(s) {unknown}; expected {list(SEGMENTS)}")
    return clients["segment"].replace_strict(SEGMENT_CODE, return_dtype=pl.Int64).to_numpy()
