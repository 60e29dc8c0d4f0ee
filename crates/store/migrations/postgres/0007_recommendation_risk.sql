-- Microsoft's risk of a recommendation on its resource (assessments api-version 2025-05-04,
-- `properties.risk`, with Defender CSPM): the level (Low, Medium, High, Critical) in its own column
-- for filters and sorting, and the whole risk (level, factors, attack path references, whether it
-- is contextual) as JSON text. Both NULL when Microsoft sent no risk (older api-versions, no
-- Defender CSPM). The other backend's 0007 adds the same columns.
ALTER TABLE recommendations ADD COLUMN risk_level TEXT;
ALTER TABLE recommendations ADD COLUMN risk TEXT;
