"""Phase 1 of the pump optimizer: every exit strategy on every signal, vs a naive bar-by-bar loop.

    .venv/bin/python benchmarks/bench_pump_phase1.py [--signals 300] [--seconds 86400] [--repeats 5]

Workload: 300 simulated pump signals x 86,400 one-second closes (tick-rounded, flat across
quiet seconds) and the default grid of 5,400 strategies (15 stop levels x 4 trailing profiles x
9 timeouts x 10 entry delays) = 1.62 M simulations.

Measured in the same run, on however many cores numba is given (2 here):
* ``evaluate_strategies`` (block-summary first-passage searches shared across the grid), best of
  ``--repeats``, interleaved with the baseline;
* the baseline: a naive jitted loop written below -- for each (signal, strategy) walk the bars
  from the entry until the rule exits -- parallel over signals, on the full workload, and the
  two results compared cell by cell (PnL and exit second must be identical);
* vectorbt 1.2 ``Portfolio.from_signals`` on a slice (the rule expressed as a per-column stop
  adjusted by ``adjust_sl_func_nb``: the fixed stop until the running high arms the trailing
  exit, then a trailing stop from the high; timeouts as exit signals), simulations/s and how
  many slice cells agree with ours.

Prints simulations per second for each and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import time

import numba as nb
import numpy as np


@nb.njit(cache=True, parallel=True)
def naive_loop(closes, offsets, sl, activation, callback, timeout_s, entry_delay_s, fee):
    n_sig = offsets.shape[0] - 1
    n_st = sl.shape[0]
    pnl = np.empty((n_st, n_sig))
    ex = np.empty((n_st, n_sig), dtype=np.int64)
    for j in nb.prange(n_sig):
        c = closes[offsets[j] : offsets[j + 1]]
        n = c.shape[0]
        for k in range(n_st):
            e = entry_delay_s[k]
            if e >= n:
                pnl[k, j] = np.nan
                ex[k, j] = -1
                continue
            p = c[e]
            stop = p * (1.0 - sl[k])
            arm = p * (1.0 + activation[k])
            horizon = min(e + timeout_s[k], n - 1)
            m = p
            x = horizon
            for t in range(e + 1, horizon + 1):
                v = c[t]
                if v > m:
                    m = v
                if v <= stop or (m >= arm and v <= m * (1.0 - callback[k])):
                    x = t
                    break
            pnl[k, j] = c[x] / p - 1.0 - fee[k]
            ex[k, j] = x - e
    return pnl, ex


def vectorbt_slice(closes, offsets, strategies, signals: int, per_signal: int):
    """Per signal of the slice: ``(signal, trade records, seconds so far, simulations so far)``;
    compilation is kept out of the timing."""
    import vectorbt as vbt
    from numba import njit

    @njit
    def adjust(c, entry_px, arm_px, cb, sl_frac):
        # Trail from the running high throughout; before the high reaches the arming level the
        # stop distance is set so that the level is entry * (1 - sl).
        peak = c.curr_price
        col = c.col
        if peak >= arm_px[col]:
            return cb[col], True
        return 1.0 - entry_px[col] * (1.0 - sl_frac[col]) / peak, True

    rows = strategies.head(per_signal)
    k = rows.height
    sims = 0
    seconds = 0.0
    for j in range(signals):
        c = closes[offsets[j] : offsets[j + 1]]
        n = c.shape[0]
        e = rows["entry_delay_s"].to_numpy()
        to = rows["timeout_s"].to_numpy()
        entries = np.zeros((n, k), dtype=bool)
        exits = np.zeros((n, k), dtype=bool)
        entries[e, np.arange(k)] = True
        hz = np.minimum(e + to, n - 1)
        exits[hz, np.arange(k)] = True
        entry_px = c[e]
        arm_px = entry_px * (1.0 + rows["activation"].to_numpy())
        args = (entry_px, arm_px, rows["callback"].to_numpy(), rows["sl"].to_numpy())
        close = np.repeat(c[:, None], k, axis=1)
        kwargs = dict(
            entries=entries,
            exits=exits,
            sl_stop=rows["sl"].to_numpy()[None, :],
            sl_trail=True,
            stop_exit_price="close",
            adjust_sl_func_nb=adjust,
            adjust_sl_args=args,
            fees=0.0,
            freq="1s",
        )
        if j == 0:  # compile outside the timing
            vbt.Portfolio.from_signals(close[:200], **{**kwargs, "entries": entries[:200], "exits": exits[:200]})
        t0 = time.perf_counter()
        pf = vbt.Portfolio.from_signals(close, **kwargs)
        rec = pf.trades.records_arr
        seconds += time.perf_counter() - t0
        sims += k
        yield j, rec, seconds, sims


def main() -> int:
    from quant_assets.lib.pump import optimizer as opt
    from quant_assets.simulate import pump_paths

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--signals", type=int, default=300)
    ap.add_argument("--seconds", type=int, default=86_400)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--vbt-signals", type=int, default=2)
    ap.add_argument("--vbt-strategies", type=int, default=60)
    args = ap.parse_args()

    print(f"numba threads: {nb.get_num_threads()}  (cpu count {os.cpu_count()})")
    t0 = time.perf_counter()
    closes, offsets, _ = pump_paths(args.signals, args.seconds, seed=11)
    grid = opt.strategy_grid()
    n_sims = grid.height * args.signals
    print(f"workload: {args.signals} signals x {args.seconds:,} s x {grid.height:,} strategies = {n_sims:,} simulations "
          f"({closes.nbytes / 1e6:.0f} MB of closes; simulated in {time.perf_counter() - t0:.1f}s)")
    st = {c: grid[c].to_numpy() for c in opt.STRATEGY_COLUMNS}
    st = {c: (v.astype(np.int64) if c in ("timeout_s", "entry_delay_s") else v.astype(np.float64)) for c, v in st.items()}
    # Warm both (compilation or cache load) on a tiny slice.
    opt.evaluate_strategies(closes[: offsets[2]], offsets[:3], grid)
    naive_loop(closes[: offsets[2]], offsets[:3], st["sl"], st["activation"], st["callback"], st["timeout_s"], st["entry_delay_s"], st["fee"])

    fast_times, naive_times = [], []
    pnl = ex = None
    for r in range(args.repeats):
        t0 = time.perf_counter()
        pnl, ex = opt.evaluate_strategies(closes, offsets, grid)
        fast_times.append(time.perf_counter() - t0)
        if r < 2:
            t0 = time.perf_counter()
            ref_pnl, ref_ex = naive_loop(closes, offsets, st["sl"], st["activation"], st["callback"], st["timeout_s"], st["entry_delay_s"], st["fee"])
            naive_times.append(time.perf_counter() - t0)
    exact = np.array_equal(pnl, ref_pnl, equal_nan=True) and np.array_equal(ex, ref_ex)
    fast, naive = min(fast_times), min(naive_times)
    print(f"fast   evaluate_strategies : best {fast * 1e3:8.1f} ms of {len(fast_times)} -> {n_sims / fast / 1e6:8.2f} M simulations/s")
    print(f"naive  bar-by-bar loop     : best {naive:8.2f} s  of {len(naive_times)} -> {n_sims / naive / 1e6:8.3f} M simulations/s "
          f"(mean walk {np.mean(ref_ex[ref_ex >= 0]):,.0f} bars)")
    print(f"exact: {'yes' if exact else 'NO'} ({pnl.size:,} cells: PnL and exit second identical)")
    print(f"speed-up: {naive / fast:.0f}x (target >= 50x)  {'MET' if naive / fast >= 50 and exact else 'NOT MET'}")

    # vectorbt on a slice.
    try:
        import vectorbt  # noqa: F401
    except ImportError:
        print("vectorbt: not installed")
        return 0 if exact else 1
    rows = grid.head(args.vbt_strategies)
    sims = agree = 0
    seconds = 0.0
    for j, rec, seconds, sims in vectorbt_slice(closes, offsets, grid, args.vbt_signals, args.vbt_strategies):
        c = closes[offsets[j] : offsets[j + 1]]
        for r in rec:
            k = int(r["col"])
            e = int(rows["entry_delay_s"][k])
            x = int(r["exit_idx"])
            v_pnl = c[x] / c[e] - 1.0 - float(rows["fee"][k])
            if x - e == ex[k, j] and v_pnl == pnl[k, j]:
                agree += 1
    print(f"vectorbt from_signals      : {sims} simulations ({args.vbt_signals} signals x {args.vbt_strategies} strategies) in "
          f"{seconds:.2f} s -> {sims / seconds:,.0f} simulations/s ({n_sims / (sims / seconds) / 3600:,.1f} h for the full workload); "
          f"{agree} of {sims} cells identical to ours")
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
