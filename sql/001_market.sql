-- Market data: the research daily table.
-- Grain: one row per (trading day, ticker). Prices are unadjusted, as the vendor delivers them;
-- prev_close is the ticker's previous trading day's close, ret_1d = close / prev_close - 1 and
-- log_ret_1d = ln(close / prev_close), both NULL on a ticker's first day.

CREATE TABLE IF NOT EXISTS market_daily_bars (
    ticker        TEXT NOT NULL,
    date          DATE NOT NULL,
    open          DOUBLE PRECISION,
    high          DOUBLE PRECISION,
    low           DOUBLE PRECISION,
    close         DOUBLE PRECISION,
    volume        BIGINT,
    transactions  BIGINT,
    prev_close    DOUBLE PRECISION,
    ret_1d        DOUBLE PRECISION,
    log_ret_1d    DOUBLE PRECISION,
    -- date first: loads and deletes work one trading day (partition) at a time.
    PRIMARY KEY (date, ticker)
);

-- One ticker's history, for per-symbol features and charts.
CREATE INDEX IF NOT EXISTS market_daily_bars_ticker_date_idx ON market_daily_bars (ticker, date);
