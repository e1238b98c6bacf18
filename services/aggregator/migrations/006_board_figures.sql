-- The figures the boards show, judged by tiendo/board (tiendo/pace.py) and stored by the
-- aggregator's periodic metrics snapshot, so that Grafana's PostgreSQL panels read status,
-- pace and projections instead of computing them again in SQL. One row per (campaign,
-- unit, indicator) with a target, every level; rewritten whole by every snapshot
-- (docs/metrics.md, "Stored figures").
CREATE TABLE board_figures (
    campaign_id          text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    unit                 text NOT NULL,
    indicator            text NOT NULL,
    level                integer NOT NULL,
    unit_name            text NOT NULL,
    parent_code          text,
    value                bigint NOT NULL,
    baseline             bigint NOT NULL,
    target               bigint NOT NULL,
    expected             double precision NOT NULL,
    pct                  double precision,
    pace                 double precision,
    run_rate_7d          double precision,
    required_daily_rate  double precision,
    projected_completion timestamptz,
    status               text NOT NULL,
    last_event_at        timestamptz,
    deadline             timestamptz NOT NULL,
    -- place in the leaderboard of its level and indicator (tiendo.board.figures.ranked)
    rank                 integer NOT NULL,
    judged_at            timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, unit, indicator)
);
-- the leaderboard: one level of one indicator; the unit board: a unit's children
CREATE INDEX board_figures_level ON board_figures (campaign_id, indicator, level, rank);
CREATE INDEX board_figures_parent ON board_figures (campaign_id, parent_code);
