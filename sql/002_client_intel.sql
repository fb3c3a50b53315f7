-- Client intelligence: the tables trading-intelligence agents and UIs read.
-- Each table holds one coherent world (one seed) and is replaced as a whole, in one transaction,
-- when the client_intel group is materialized. JSON columns are JSONB (DuckDB: an alias of JSON,
-- created by the warehouse before the DDL runs). Amounts are USD unless a column says otherwise;
-- prices are in the instrument's quote currency.

-- Daily bars, one per instrument and calendar day.
CREATE TABLE IF NOT EXISTS market_bars (
    instrument  TEXT NOT NULL,
    date        DATE NOT NULL,
    open        DOUBLE PRECISION NOT NULL,
    high        DOUBLE PRECISION NOT NULL,
    low         DOUBLE PRECISION NOT NULL,
    close       DOUBLE PRECISION NOT NULL,
    volume      BIGINT NOT NULL,
    ret_1d      DOUBLE PRECISION,
    PRIMARY KEY (instrument, date)
);

CREATE TABLE IF NOT EXISTS clients (
    client_id        TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    desk             TEXT NOT NULL,
    region           TEXT NOT NULL,
    segment          TEXT NOT NULL,
    onboarding_date  DATE NOT NULL
);

-- One row per execution; quantity in base-currency units (ounces for gold), always > 0.
CREATE TABLE IF NOT EXISTS trades (
    trade_id         BIGINT PRIMARY KEY,
    client_id        TEXT NOT NULL,
    instrument       TEXT NOT NULL,
    trade_date       DATE NOT NULL,
    executed_at      TIMESTAMP NOT NULL,
    side             TEXT NOT NULL,
    order_type       TEXT NOT NULL,
    position_effect  TEXT NOT NULL,
    quantity         BIGINT NOT NULL,
    price            DOUBLE PRECISION NOT NULL,
    notional_usd     DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_client_time_idx ON trades (client_id, executed_at);

-- Open positions on as_of (the replay of the trades); quantity signed, never 0.
CREATE TABLE IF NOT EXISTS positions (
    client_id           TEXT NOT NULL,
    instrument          TEXT NOT NULL,
    quantity            BIGINT NOT NULL,
    avg_entry_price     DOUBLE PRECISION NOT NULL,
    market_price        DOUBLE PRECISION NOT NULL,
    market_value_usd    DOUBLE PRECISION NOT NULL,
    unrealized_pnl_usd  DOUBLE PRECISION NOT NULL,
    opened_on           DATE NOT NULL,
    as_of               DATE NOT NULL,
    PRIMARY KEY (client_id, instrument)
);

CREATE TABLE IF NOT EXISTS headlines (
    headline_id   BIGINT PRIMARY KEY,
    published_at  TIMESTAMP NOT NULL,
    instrument    TEXT NOT NULL,
    headline      TEXT NOT NULL,
    source        TEXT NOT NULL,
    sentiment     DOUBLE PRECISION NOT NULL,
    tags          JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS headlines_instrument_time_idx ON headlines (instrument, published_at);

-- Daily PnL, exposure and risk per client; var_95_1d_usd is NULL until 20 returns exist.
CREATE TABLE IF NOT EXISTS pnl_risk (
    client_id           TEXT NOT NULL,
    date                DATE NOT NULL,
    realized_pnl_usd    DOUBLE PRECISION NOT NULL,
    unrealized_pnl_usd  DOUBLE PRECISION NOT NULL,
    pnl_usd             DOUBLE PRECISION NOT NULL,
    cumulative_pnl_usd  DOUBLE PRECISION NOT NULL,
    gross_exposure_usd  DOUBLE PRECISION NOT NULL,
    net_exposure_usd    DOUBLE PRECISION NOT NULL,
    var_95_1d_usd       DOUBLE PRECISION,
    drawdown_usd        DOUBLE PRECISION NOT NULL,
    open_positions      BIGINT NOT NULL,
    PRIMARY KEY (client_id, date)
);

-- One row per client; exposure_concentration = {instrument: share of gross exposure}.
CREATE TABLE IF NOT EXISTS features (
    client_id               TEXT PRIMARY KEY,
    as_of                   DATE NOT NULL,
    n_trades                BIGINT NOT NULL,
    momentum_beta_1d        DOUBLE PRECISION,
    momentum_beta_5d        DOUBLE PRECISION,
    momentum_beta_20d       DOUBLE PRECISION,
    holding_period_avg      DOUBLE PRECISION,
    turnover                DOUBLE PRECISION,
    aggressiveness          DOUBLE PRECISION,
    lead_lag_alpha          DOUBLE PRECISION,
    exposure_concentration  JSONB NOT NULL
);

-- Segment timeline; the current regime has end_date NULL.
CREATE TABLE IF NOT EXISTS client_regimes (
    client_id   TEXT NOT NULL,
    segment     TEXT NOT NULL,
    start_date  DATE NOT NULL,
    end_date    DATE,
    confidence  DOUBLE PRECISION NOT NULL,
    notes       TEXT NOT NULL,
    PRIMARY KEY (client_id, start_date)
);

CREATE TABLE IF NOT EXISTS switch_probability_history (
    client_id    TEXT NOT NULL,
    computed_at  TIMESTAMP NOT NULL,
    switch_prob  DOUBLE PRECISION NOT NULL,
    confidence   DOUBLE PRECISION NOT NULL,
    segment      TEXT NOT NULL,
    drivers      JSONB NOT NULL,
    risk_flags   JSONB NOT NULL,
    PRIMARY KEY (client_id, computed_at)
);
