-- The class table for the rule files: sql/cell_types.csv, the one home of the 14 classes (class
-- index order, compartment, lineage, map colour), read here by SQL as pipelines/cell_types.py
-- reads it for Python.
--
-- Run before a rule file, with the DuckDB variable cell_types_csv set to the CSV's path
-- (storage/sql_files.py: cell_types_sql() sets it and returns this file's text; the labelling and
-- the catalog run it). Creates, both TEMP so that a catalog file stores only what a rule file
-- makes of them:
--   cell_types(cell_type, class_index, compartment, lineage, red, green, blue): the table.
--   cell_type_enum: an ENUM of the class names in class index order (a column cast to it
--                   stores the ENUM itself, so it outlives this connection).

CREATE OR REPLACE TEMP TABLE cell_types AS
SELECT *
FROM read_csv(getvariable('cell_types_csv'), header = true, auto_detect = false, columns = {
    'cell_type': 'VARCHAR', 'class_index': 'SMALLINT', 'compartment': 'VARCHAR',
    'lineage': 'VARCHAR', 'red': 'UTINYINT', 'green': 'UTINYINT', 'blue': 'UTINYINT'
})
ORDER BY class_index;

CREATE OR REPLACE TEMP TYPE cell_type_enum AS ENUM (
    SELECT cell_type FROM cell_types ORDER BY class_index
);
