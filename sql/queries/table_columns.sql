-- Each table's column list as `name TYPE, ...` in column order (storage/catalog.py reads the
-- stand-ins of sql/dataset_standins.sql this way).
SELECT
    table_name,
    string_agg(column_name || ' ' || data_type, ', ' ORDER BY column_index) AS columns
FROM duckdb_columns()
GROUP BY table_name;
