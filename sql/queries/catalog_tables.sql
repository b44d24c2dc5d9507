-- The tables (not views) of the open catalog: the stand-ins of datasets not written when it was
-- built (storage/catalog.py: refresh_sources turns those written since into views).
SELECT table_name
FROM duckdb_tables()
WHERE database_name = current_database();
