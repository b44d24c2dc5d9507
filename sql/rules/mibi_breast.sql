-- A small rule set for the MIBI breast (DCIS) panel, in the style of Table 1: a sequence of
-- groups, exclusions and final annotations. It shows that a new panel is a new SQL file:
-- point the catalog's `rules_sql` setting at it; no Python changes.
--
-- Contract (the same shape as sql/cell_type_rules.sql). Run on a connection that has
--   stain_positivity(nucleus_id BIGINT, panck, ecad, vimentin, sma, cd45, cd3, cd4, cd8, cd20,
--                     cd68 BOOLEAN)
-- (stain keys of PanKRT, ECAD, VIM, SMA, CD45, CD3, CD4, CD8, CD20, CD68 after aliasing).
-- Creates nucleus_cell_type(nucleus_id, cell_type, excluded_at_step) and
-- cell_type_hierarchy(cell_type, class_index, compartment, lineage). Its 10 classes are not
-- Table 1's, so it lists them here instead of reading the project's class table cell_types.
--
-- Steps:
--  1 Group Epi+ nuclei: PanCK+ or ECAD+
--  2 Group Stroma+ nuclei: Vimentin+ or SMA+
--  3 Group Immune+ nuclei: CD45+ or CD3+ or CD20+ or CD68+
--  4 Exclude nuclei that are Epi+ and Immune+
--  5 Exclude lineage conflicts: (CD3+ and CD20+), (CD3+ and CD68+), (CD20+ and CD68+)
--  6 Exclude T cell conflicts: (CD4+ and CD8+), or CD8+ without CD3+
--  7 Exclude nuclei that are Epi-, Stroma- and Immune-
--  8 Final annotation, myoepithelial: Epi+ and SMA+
--  9 Final annotation, epithelial (luminal/tumour): Epi+ and SMA-
-- 10 Final annotation, fibroblast: Stroma+, Epi-, Immune- and SMA+
-- 11 Final annotation, stromal: Stroma+, Epi-, Immune- and SMA-
-- 12 Final annotation, helper T: Immune+ and CD3+ and CD4+
-- 13 Final annotation, cytotoxic T: Immune+ and CD3+ and CD8+
-- 14 Final annotation, T cell: Immune+ and CD3+ and CD4- and CD8-
-- 15 Final annotation, B cell: Immune+ and CD20+
-- 16 Final annotation, macrophage: Immune+ and CD68+ (CD4+ allowed: macrophages carry CD4)
-- 17 Final annotation, leukocyte: Immune+ and CD3-, CD20-, CD68-
-- After the exclusions the final annotations are disjoint and cover every kept nucleus.

CREATE OR REPLACE VIEW nucleus_cell_type AS
WITH stains AS (
    SELECT
        nucleus_id,
        coalesce(panck, FALSE) AS panck,
        coalesce(ecad, FALSE) AS ecad,
        coalesce(vimentin, FALSE) AS vimentin,
        coalesce(sma, FALSE) AS sma,
        coalesce(cd45, FALSE) AS cd45,
        coalesce(cd3, FALSE) AS cd3,
        coalesce(cd4, FALSE) AS cd4,
        coalesce(cd8, FALSE) AS cd8,
        coalesce(cd20, FALSE) AS cd20,
        coalesce(cd68, FALSE) AS cd68
    FROM stain_positivity
),
grouped AS (
    SELECT
        *,
        (panck OR ecad) AS epi,                     -- step 1
        (vimentin OR sma) AS stroma,                -- step 2
        (cd45 OR cd3 OR cd20 OR cd68) AS immune     -- step 3
    FROM stains
),
decided AS (
    SELECT
        nucleus_id,
        CASE
            WHEN epi AND immune THEN 4
            WHEN (cd3 AND cd20) OR (cd3 AND cd68) OR (cd20 AND cd68) THEN 5
            WHEN (cd4 AND cd8) OR (cd8 AND NOT cd3) THEN 6
            WHEN NOT epi AND NOT stroma AND NOT immune THEN 7
        END AS excluded_at_step,
        CASE
            WHEN epi AND sma THEN 'myoepithelial'
            WHEN epi THEN 'epithelial'
            WHEN stroma AND NOT immune AND sma THEN 'fibroblast'
            WHEN stroma AND NOT immune THEN 'stromal'
            WHEN immune AND cd3 AND cd4 THEN 'helper_t'
            WHEN immune AND cd3 AND cd8 THEN 'cytotoxic_t'
            WHEN immune AND cd3 THEN 't_cell'
            WHEN immune AND cd20 THEN 'b_cell'
            WHEN immune AND cd68 THEN 'macrophage'
            WHEN immune THEN 'leukocyte'
        END AS final_annotation
    FROM grouped
)
SELECT
    nucleus_id,
    CASE WHEN excluded_at_step IS NULL THEN final_annotation END AS cell_type,
    CAST(excluded_at_step AS SMALLINT) AS excluded_at_step
FROM decided;

CREATE OR REPLACE TABLE cell_type_hierarchy AS
SELECT
    CAST(cell_type AS VARCHAR) AS cell_type,
    CAST(class_index AS SMALLINT) AS class_index,
    CAST(compartment AS VARCHAR) AS compartment,
    CAST(lineage AS VARCHAR) AS lineage
FROM (VALUES
    ('epithelial', 0, 'epithelial', NULL),
    ('myoepithelial', 1, 'epithelial', NULL),
    ('fibroblast', 2, 'connective', NULL),
    ('stromal', 3, 'connective', NULL),
    ('helper_t', 4, 'immune', 'lymphoid'),
    ('cytotoxic_t', 5, 'immune', 'lymphoid'),
    ('t_cell', 6, 'immune', 'lymphoid'),
    ('b_cell', 7, 'immune', 'lymphoid'),
    ('macrophage', 8, 'immune', 'myeloid'),
    ('leukocyte', 9, 'immune', NULL)
) AS h(cell_type, class_index, compartment, lineage);
