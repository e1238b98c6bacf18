"""Progress rows as the `unit-progress` feed publishes them."""

# -- reading progress ---------------------------------------------------------------------
SELECT_PROGRESS_KEYS = """
SELECT p.*, u.name AS unit_name, u.level, u.parent_code
FROM progress p
JOIN units u ON u.code = p.unit
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (campaign_id, unit, indicator)
  ON p.campaign_id = k.campaign_id AND p.unit = k.unit AND p.indicator = k.indicator
"""


SELECT_ALL_PROGRESS = """
SELECT p.*, u.name AS unit_name, u.level, u.parent_code
FROM progress p JOIN units u ON u.code = p.unit
"""
