-- Table 1 of Remedios et al.: the sequential decision process that turns per-nucleus stain
-- positivity into one of 14 nucleus classes.
--
-- Contract. Run on a DuckDB connection that has a table or view
--   stain_positivity(nucleus_id BIGINT, nakatpase, panck, muc2, cga, vimentin, sma, sox9, olfm4,
--                     lysozyme, cd45, cd20, cd68, cd11b, cd3d, cd8, cd4 BOOLEAN)
-- (further columns are ignored) and the class table cell_types with its ENUM cell_type_enum
-- (sql/cell_types.sql, which the labelling and the catalog run before a rule file). Creates
--   nucleus_cell_type(nucleus_id, cell_type, excluded_at_step): one row per nucleus.
--     cell_type        one of goblet, endocrine, epithelial, progenitor, fibroblast, stromal,
--                      monocyte, macrophage, helper_t, cytotoxic_t, t_cell_receptor, b_cell,
--                      myeloid, leukocyte; NULL when an exclusion step removed the nucleus.
--                      Typed as cell_type_enum, an ENUM of the 14 names in class index order:
--                      it compares, groups and joins like text, and is fetched as
--                      dictionary-encoded strings.
--     excluded_at_step the number of the first Table 1 step that excluded the nucleus; NULL when
--                      the nucleus was kept.
--   cell_type_patterns(nakatpase, ..., cd4, cell_type, excluded_at_step): Table 1's outcome for
--                      every one of the 2^16 positivity patterns of the 16 stains.
--   cell_type_hierarchy(cell_type, class_index, compartment, lineage): the 14 classes of
--                      cell_types in class index order with the coarse hierarchy (epithelial /
--                      connective / immune; lymphoid / myeloid), so the catalog's count views need
--                      no Python.
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
--   step 31 ("Group all nuclei that are Progenitor+") comes last. The decision below therefore
--   tests the steps from 31 down to 17: the last matching step wins. In practice the order never
--   matters: after the exclusions, the final annotations are pairwise disjoint (every earlier
--   final step carries "Progenitor-" and the exclusions remove the remaining overlaps) and
--   together cover every kept nucleus. tests/sql/test_cell_type_rules.py checks this for all
--   2^16 positivity patterns against a separate Python reading of the table.
-- * A kept nucleus that matched no final annotation would get cell_type NULL and
--   excluded_at_step NULL; with Table 1 as written no positivity pattern reaches that state.
-- * A NULL positivity (a stain or threshold missing for the slide) counts as negative.
--
-- Layout, chosen for speed as well as for reading. A nucleus's class depends on its 16
-- positivity calls alone, and 16 calls have only 2^16 = 65,536 patterns. So the steps below are
-- applied once to every pattern when this file runs (cell_type_patterns: every step's condition
-- a named boolean, x<step> for exclusions and f<step> for final annotations, then one CASE picks
-- the step that decides the pattern), and nucleus_cell_type gives each nucleus the row of its
-- own pattern. Ten million nuclei then cost a hash of 16 booleans and one lookup each instead of
-- the ~60 boolean operations of the steps; the steps themselves stay the single source of truth.
-- The lookup key is hash() of the 16 calls: one function over the 16 columns, so a nucleus is
-- matched by one key comparison instead of 16. The view computes the key on both sides when it
-- is read, so a catalog file never depends on the DuckDB version that built it, and the check
-- after the pattern table stops this file with an error if two patterns ever shared a key.

CREATE OR REPLACE TABLE cell_type_patterns AS
WITH stains AS (
    -- every positivity pattern once: bit i of `pattern` is the i-th stain of the contract
    SELECT
        pattern,
        (pattern & 1) <> 0 AS nakatpase,
        (pattern & 2) <> 0 AS panck,
        (pattern & 4) <> 0 AS muc2,
        (pattern & 8) <> 0 AS cga,
        (pattern & 16) <> 0 AS vimentin,
        (pattern & 32) <> 0 AS sma,
        (pattern & 64) <> 0 AS sox9,
        (pattern & 128) <> 0 AS olfm4,
        (pattern & 256) <> 0 AS lysozyme,
        (pattern & 512) <> 0 AS cd45,
        (pattern & 1024) <> 0 AS cd20,
        (pattern & 2048) <> 0 AS cd68,
        (pattern & 4096) <> 0 AS cd11b,
        (pattern & 8192) <> 0 AS cd3d,
        (pattern & 16384) <> 0 AS cd8,
        (pattern & 32768) <> 0 AS cd4
    FROM range(65536) AS patterns(pattern)
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
steps AS (
    SELECT
        pattern,
        -- step 3: exclude nuclei that are both Epi+ and Stroma+
        epi AND stroma AS x3,
        -- step 5: macrophage conflicts (CD68+ with CD3d+, CD20+, CD4+, CD8+ or CD11B+)
        cd68 AND (cd3d OR cd20 OR cd4 OR cd8 OR cd11b) AS x5,
        -- step 6: monocyte conflicts (CD11B+ with CD3d+, CD20+, CD4+, CD8+ or CD68+)
        cd11b AND (cd3d OR cd20 OR cd4 OR cd8 OR cd68) AS x6,
        -- step 7: B cell conflicts (CD20+ with CD3d+, CD4+ or CD8+)
        cd20 AND (cd3d OR cd4 OR cd8) AS x7,
        -- step 8: helper T / cytotoxic T conflicts
        (NOT cd3d AND NOT cd45 AND cd4)
            OR (NOT cd3d AND NOT cd45 AND cd8)
            OR (cd4 AND cd8) AS x8,
        -- step 10: neither in the epithelium nor in the stroma (Epi- and Stroma-)
        NOT epi AND NOT stroma AS x10,
        -- step 11: goblet conflicts (Muc2+ with Immune+, Progenitor+ or SMA+)
        muc2 AND (immune OR progenitor OR sma) AS x11,
        -- step 12: endocrine conflicts (CgA+ with Immune+, SMA+, Progenitor+ or Muc2+)
        cga AND (immune OR sma OR progenitor OR muc2) AS x12,
        -- step 13: fibroblast conflicts (SMA+ and Immune+)
        sma AND immune AS x13,
        -- step 14: progenitor conflicts (Immune+ and Progenitor+)
        immune AND progenitor AS x14,
        -- step 15: negative for all large groupings (never first: step 10 removed them)
        NOT epi AND NOT stroma AND NOT progenitor AND NOT immune AS x15,
        -- step 16: immune nuclei in the Epi+ group (Epi+ and Immune+)
        epi AND immune AS x16,
        -- step 17: goblet = Epi+ and Muc2+ and Progenitor-
        epi AND muc2 AND NOT progenitor AS f17,
        -- step 18: endocrine = Epi+ and CgA+ and Progenitor-
        epi AND cga AND NOT progenitor AS f18,
        -- step 19: epithelial = Epi+ and CgA- and Progenitor- and Muc2-
        epi AND NOT cga AND NOT progenitor AND NOT muc2 AS f19,
        -- step 20 groups stromal/fibroblasts: Stroma+ and Immune-
        -- step 21: fibroblast = stromal/fibroblast group and SMA+ and Progenitor-
        stroma AND NOT immune AND sma AND NOT progenitor AS f21,
        -- step 22: stromal = stromal/fibroblast group and SMA- and Progenitor-
        stroma AND NOT immune AND NOT sma AND NOT progenitor AS f22,
        -- step 23: myeloid = Immune+ and Lysozyme+ CD68- CD11B- Progenitor- CD20- CD3d- CD8- CD4-
        immune AND lysozyme AND NOT cd68 AND NOT cd11b AND NOT progenitor AND NOT cd20
            AND NOT cd3d AND NOT cd8 AND NOT cd4 AS f23,
        -- step 24: helper T = Immune+ and CD4+ and Progenitor-
        immune AND cd4 AND NOT progenitor AS f24,
        -- step 25: cytotoxic T = Immune+ and CD8+ and Progenitor-
        immune AND cd8 AND NOT progenitor AS f25,
        -- step 26: T cell receptor = Immune+ and CD3d+ and CD4- and CD8-
        immune AND cd3d AND NOT cd4 AND NOT cd8 AS f26,
        -- step 27: monocyte = Immune+ and CD11b+ CD3d- Progenitor- CD4- CD8-
        immune AND cd11b AND NOT cd3d AND NOT progenitor AND NOT cd4 AND NOT cd8 AS f27,
        -- step 28: macrophage = Immune+ and CD68+ CD3d- Progenitor- CD4- CD8-
        immune AND cd68 AND NOT cd3d AND NOT progenitor AND NOT cd4 AND NOT cd8 AS f28,
        -- step 29: B cell = Immune+ and CD20+ CD68- CD3d- Progenitor- CD4- CD8-
        immune AND cd20 AND NOT cd68 AND NOT cd3d AND NOT progenitor AND NOT cd4 AND NOT cd8
            AS f29,
        -- step 30: leukocyte = Immune+ and CD45+ CD20- CD68- CD3d- Progenitor- CD4- CD8-
        --          CD11B- Lysozyme-
        immune AND cd45 AND NOT cd20 AND NOT cd68 AND NOT cd3d AND NOT progenitor AND NOT cd4
            AND NOT cd8 AND NOT cd11b AND NOT lysozyme AS f30,
        -- step 31: progenitor = all nuclei that are Progenitor+
        progenitor AS f31
    FROM grouped
),
decided AS (
    SELECT
        pattern,
        CASE
            -- excluded: the first exclusion step that applies
            WHEN x3 OR x5 OR x6 OR x7 OR x8 OR x10 OR x11 OR x12 OR x13 OR x14 OR x15 OR x16 THEN
                CASE
                    WHEN x3 THEN 3 WHEN x5 THEN 5 WHEN x6 THEN 6 WHEN x7 THEN 7
                    WHEN x8 THEN 8 WHEN x10 THEN 10 WHEN x11 THEN 11 WHEN x12 THEN 12
                    WHEN x13 THEN 13 WHEN x14 THEN 14 WHEN x15 THEN 15 WHEN x16 THEN 16
                END
            -- kept: the last final annotation step that applies (later steps overwrite)
            ELSE
                CASE
                    WHEN f31 THEN 31 WHEN f30 THEN 30 WHEN f29 THEN 29 WHEN f28 THEN 28
                    WHEN f27 THEN 27 WHEN f26 THEN 26 WHEN f25 THEN 25 WHEN f24 THEN 24
                    WHEN f23 THEN 23 WHEN f22 THEN 22 WHEN f21 THEN 21 WHEN f19 THEN 19
                    WHEN f18 THEN 18 WHEN f17 THEN 17
                END
        END AS decided_at_step
    FROM steps
)
SELECT
    nakatpase, panck, muc2, cga, vimentin, sma, sox9, olfm4, lysozyme, cd45, cd20, cd68, cd11b,
    cd3d, cd8, cd4,
    -- the class each final annotation step gives, indexed by step number (1-31)
    CAST([NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, 'goblet', 'endocrine', 'epithelial', NULL, 'fibroblast', 'stromal',
          'myeloid', 'helper_t', 'cytotoxic_t', 't_cell_receptor', 'monocyte', 'macrophage',
          'b_cell', 'leukocyte', 'progenitor'][decided_at_step]
         AS cell_type_enum) AS cell_type,
    CAST(CASE WHEN decided_at_step <= 16 THEN decided_at_step END AS SMALLINT) AS excluded_at_step
FROM stains
JOIN decided USING (pattern)
ORDER BY pattern;

-- The 2^16 patterns have 2^16 distinct lookup keys (else: stop here with an error).
SELECT CASE
    WHEN count(DISTINCT hash(
        nakatpase, panck, muc2, cga, vimentin, sma, sox9, olfm4, lysozyme, cd45, cd20, cd68, cd11b,
        cd3d, cd8, cd4)) = count(*) THEN count(*)
    ELSE error('cell_type_rules.sql: two positivity patterns share a hash key in this DuckDB '
               || 'version; look nuclei up on the 16 stain columns instead of their hash.')
END AS n_patterns
FROM cell_type_patterns;

CREATE OR REPLACE VIEW nucleus_cell_type AS
SELECT
    n.nucleus_id,
    p.cell_type,
    p.excluded_at_step
FROM stain_positivity AS n
JOIN cell_type_patterns AS p
    -- a call counts as positive only when it is TRUE: a NULL call (a stain or threshold missing
    -- for the slide) counts as negative, like FALSE
    ON hash(
        n.nakatpase AND n.nakatpase IS NOT NULL,
        n.panck AND n.panck IS NOT NULL,
        n.muc2 AND n.muc2 IS NOT NULL,
        n.cga AND n.cga IS NOT NULL,
        n.vimentin AND n.vimentin IS NOT NULL,
        n.sma AND n.sma IS NOT NULL,
        n.sox9 AND n.sox9 IS NOT NULL,
        n.olfm4 AND n.olfm4 IS NOT NULL,
        n.lysozyme AND n.lysozyme IS NOT NULL,
        n.cd45 AND n.cd45 IS NOT NULL,
        n.cd20 AND n.cd20 IS NOT NULL,
        n.cd68 AND n.cd68 IS NOT NULL,
        n.cd11b AND n.cd11b IS NOT NULL,
        n.cd3d AND n.cd3d IS NOT NULL,
        n.cd8 AND n.cd8 IS NOT NULL,
        n.cd4 AND n.cd4 IS NOT NULL)
     = hash(
        p.nakatpase, p.panck, p.muc2, p.cga, p.vimentin, p.sma, p.sox9, p.olfm4, p.lysozyme,
        p.cd45, p.cd20, p.cd68, p.cd11b, p.cd3d, p.cd8, p.cd4);

CREATE OR REPLACE TABLE cell_type_hierarchy AS
SELECT
    CAST(cell_type AS VARCHAR) AS cell_type,
    CAST(class_index AS SMALLINT) AS class_index,
    CAST(compartment AS VARCHAR) AS compartment,
    CAST(lineage AS VARCHAR) AS lineage
FROM cell_types
ORDER BY class_index;
