-- Table 1 of Remedios et al.: the sequential decision process that turns per-nucleus stain
-- positivity into one of 14 nucleus classes.
--
-- Contract. Run on a DuckDB connection that has a table or view
--   marker_positivity(nucleus_id BIGINT, nakatpase, panck, muc2, cga, vimentin, sma, sox9, olfm4,
--                     lysozyme, cd45, cd20, cd68, cd11b, cd3d, cd8, cd4 BOOLEAN)
-- (further columns are ignored). Creates
--   nucleus_cell_type(nucleus_id, cell_type, excluded_at_step): one row per nucleus.
--     cell_type        one of goblet, endocrine, epithelial, progenitor, fibroblast, stromal,
--                      monocyte, macrophage, helper_t, cytotoxic_t, t_cell_receptor, b_cell,
--                      myeloid, leukocyte; NULL when an exclusion step removed the nucleus.
--     excluded_at_step the number of the first Table 1 step that excluded the nucleus; NULL when
--                      the nucleus was kept.
--   cell_type_hierarchy(cell_type, class_index, compartment, lineage): the 14 classes in class
--                      index order with the coarse hierarchy (epithelial / connective / immune;
--                      lymphoid / myeloid), so the catalog's count views need no Python.
--
-- How the table is read (decisions, with the reasons):
-- * The steps are applied in order. A nucleus leaves the sequence at the first exclusion step
--   whose condition it meets; that step number is reported. The exclusion steps are
--   3, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15 and 16 ("Exclude ..."; step 16 "Remove any immune
--   nuclei from Epi+ group" excludes Epi+ nuclei that are Immune+).
-- * Steps 1, 2, 4, 9 and 20 only name groups (Epi+, Stroma+, Immune+, Progenitor+,
--   stromal/fibroblasts). Group membership depends on positivity alone, so naming a group at its
--   step or up front gives the same answer.
-- * Step 10 excludes every nucleus that is neither Epi+ nor Stroma+, immune nuclei included: an
--   immune nucleus is kept only when it is Stroma+ (Vimentin+, which leukocytes express) and not
--   SMA+ (step 13) and not Epi+ (step 16). Written exactly as in the paper.
-- * Step 15 can never be the first step to exclude a nucleus: a nucleus that is Epi- and
--   Stroma- was already removed at step 10. It is kept for fidelity to the table.
-- * Final annotations (steps 17-31) are "Group ... / Final annotation" steps applied in order,
--   so a later step that groups a nucleus again would overwrite the label of an earlier one;
--   step 31 ("Group all nuclei that are Progenitor+") comes last. The CASE below therefore tests
--   the steps from 31 down to 17: the last matching step wins. In practice the order never
--   matters: after the exclusions, the final annotations are pairwise disjoint (every earlier
--   final step carries "Progenitor-" and the exclusions remove the remaining overlaps) and
--   together cover every kept nucleus. tests/sql/test_cell_type_rules.py checks this for all
--   2^16 positivity patterns against a separate Python reading of the table.
-- * A kept nucleus that matched no final annotation would get cell_type NULL and
--   excluded_at_step NULL; with Table 1 as written no positivity pattern reaches that state.
-- * A NULL positivity (a stain or threshold missing for the slide) counts as negative.

CREATE OR REPLACE VIEW nucleus_cell_type AS
WITH stains AS (
    SELECT
        nucleus_id,
        coalesce(nakatpase, FALSE) AS nakatpase,
        coalesce(panck, FALSE) AS panck,
        coalesce(muc2, FALSE) AS muc2,
        coalesce(cga, FALSE) AS cga,
        coalesce(vimentin, FALSE) AS vimentin,
        coalesce(sma, FALSE) AS sma,
        coalesce(sox9, FALSE) AS sox9,
        coalesce(olfm4, FALSE) AS olfm4,
        coalesce(lysozyme, FALSE) AS lysozyme,
        coalesce(cd45, FALSE) AS cd45,
        coalesce(cd20, FALSE) AS cd20,
        coalesce(cd68, FALSE) AS cd68,
        coalesce(cd11b, FALSE) AS cd11b,
        coalesce(cd3d, FALSE) AS cd3d,
        coalesce(cd8, FALSE) AS cd8,
        coalesce(cd4, FALSE) AS cd4
    FROM marker_positivity
),
grouped AS (
    SELECT
        *,
        -- step 1: Epi+ = NaKATPase+ or PanCK+ or Muc2+ or CgA+
        (nakatpase OR panck OR muc2 OR cga) AS epi,
        -- step 2: Stroma+ = Vimentin+ or SMA+
        (vimentin OR sma) AS stroma,
        -- step 4: Immune+ = CD45+ or CD20+ or CD68+ or CD11B+ or Lysozyme+ or CD3d+ or CD8+ or CD4+
        (cd45 OR cd20 OR cd68 OR cd11b OR lysozyme OR cd3d OR cd8 OR cd4) AS immune,
        -- step 9: Progenitor+ = Sox9+ or OLFM4+
        (sox9 OR olfm4) AS progenitor
    FROM stains
),
decided AS (
    SELECT
        nucleus_id,
        CASE
            -- step 3: Epi+ and Stroma+
            WHEN epi AND stroma THEN 3
            -- step 5: macrophage conflicts
            WHEN cd68 AND (cd3d OR cd20 OR cd4 OR cd8 OR cd11b) THEN 5
            -- step 6: monocyte conflicts
            WHEN cd11b AND (cd3d OR cd20 OR cd4 OR cd8 OR cd68) THEN 6
            -- step 7: B cell conflicts
            WHEN cd20 AND (cd3d OR cd4 OR cd8) THEN 7
            -- step 8: helper T / cytotoxic T conflicts
            WHEN (NOT cd3d AND NOT cd45 AND cd4)
              OR (NOT cd3d AND NOT cd45 AND cd8)
              OR (cd4 AND cd8) THEN 8
            -- step 10: neither epithelium nor stroma
            WHEN NOT epi AND NOT stroma THEN 10
            -- step 11: goblet conflicts
            WHEN muc2 AND (immune OR progenitor OR sma) THEN 11
            -- step 12: endocrine conflicts
            WHEN cga AND (immune OR sma OR progenitor OR muc2) THEN 12
            -- step 13: fibroblast conflicts
            WHEN sma AND immune THEN 13
            -- step 14: progenitor conflicts
            WHEN immune AND progenitor THEN 14
            -- step 15: negative for all large groupings (already removed by step 10)
            WHEN NOT epi AND NOT stroma AND NOT progenitor AND NOT immune THEN 15
            -- step 16: immune nuclei in the Epi+ group
            WHEN epi AND immune THEN 16
        END AS excluded_at_step,
        -- steps 17-31, tested from the last step down: the last matching step wins.
        CASE
            -- 31: all nuclei that are Progenitor+
            WHEN progenitor THEN 'progenitor'
            -- 30: Immune+ and CD45+ CD20- CD68- CD3d- Progenitor- CD4- CD8- CD11B- Lysozyme-
            WHEN immune AND cd45 AND NOT cd20 AND NOT cd68 AND NOT cd3d AND NOT progenitor
                AND NOT cd4 AND NOT cd8 AND NOT cd11b AND NOT lysozyme THEN 'leukocyte'
            -- 29: Immune+ and CD20+ CD68- CD3d- Progenitor- CD4- CD8-
            WHEN immune AND cd20 AND NOT cd68 AND NOT cd3d AND NOT progenitor
                AND NOT cd4 AND NOT cd8 THEN 'b_cell'
            -- 28: Immune+ and CD68+ CD3d- Progenitor- CD4- CD8-
            WHEN immune AND cd68 AND NOT cd3d AND NOT progenitor
                AND NOT cd4 AND NOT cd8 THEN 'macrophage'
            -- 27: Immune+ and CD11b+ CD3d- Progenitor- CD4- CD8-
            WHEN immune AND cd11b AND NOT cd3d AND NOT progenitor
                AND NOT cd4 AND NOT cd8 THEN 'monocyte'
            -- 26: Immune+ and CD3d+ CD4- CD8-
            WHEN immune AND cd3d AND NOT cd4 AND NOT cd8 THEN 't_cell_receptor'
            -- 25: Immune+ and CD8+ Progenitor-
            WHEN immune AND cd8 AND NOT progenitor THEN 'cytotoxic_t'
            -- 24: Immune+ and CD4+ Progenitor-
            WHEN immune AND cd4 AND NOT progenitor THEN 'helper_t'
            -- 23: Immune+ and Lysozyme+ CD68- CD11B- Progenitor- CD20- CD3d- CD8- CD4-
            WHEN immune AND lysozyme AND NOT cd68 AND NOT cd11b AND NOT progenitor
                AND NOT cd20 AND NOT cd3d AND NOT cd8 AND NOT cd4 THEN 'myeloid'
            -- 22: stromal/fibroblast group (step 20: Stroma+ and Immune-) and SMA- Progenitor-
            WHEN stroma AND NOT immune AND NOT sma AND NOT progenitor THEN 'stromal'
            -- 21: stromal/fibroblast group and SMA+ Progenitor-
            WHEN stroma AND NOT immune AND sma AND NOT progenitor THEN 'fibroblast'
            -- 19: Epi+ and CgA- Progenitor- Muc2-
            WHEN epi AND NOT cga AND NOT progenitor AND NOT muc2 THEN 'epithelial'
            -- 18: Epi+ and CgA+ Progenitor-
            WHEN epi AND cga AND NOT progenitor THEN 'endocrine'
            -- 17: Epi+ and Muc2+ Progenitor-
            WHEN epi AND muc2 AND NOT progenitor THEN 'goblet'
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
    ('goblet', 0, 'epithelial', NULL),
    ('endocrine', 1, 'epithelial', NULL),
    ('epithelial', 2, 'epithelial', NULL),
    ('progenitor', 3, 'epithelial', NULL),
    ('fibroblast', 4, 'connective', NULL),
    ('stromal', 5, 'connective', NULL),
    ('monocyte', 6, 'immune', 'myeloid'),
    ('macrophage', 7, 'immune', 'myeloid'),
    ('helper_t', 8, 'immune', 'lymphoid'),
    ('cytotoxic_t', 9, 'immune', 'lymphoid'),
    ('t_cell_receptor', 10, 'immune', 'lymphoid'),
    ('b_cell', 11, 'immune', 'lymphoid'),
    ('myeloid', 12, 'immune', 'myeloid'),
    ('leukocyte', 13, 'immune', NULL)
) AS h(cell_type, class_index, compartment, lineage);
