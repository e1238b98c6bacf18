-- The counters are rewritten in place by every batch. Free room on each page lets
-- PostgreSQL keep the new row version on the same page without touching the indexes
-- (a HOT update: no indexed column of these tables ever changes).
ALTER TABLE progress SET (fillfactor = 70);
ALTER TABLE daily_counts SET (fillfactor = 70);
