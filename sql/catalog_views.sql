-- The catalog's summary views. Run after the Parquet views (nucleus_features, stain_thresholds,
-- nucleus_labels, slide_manifest, nucleus_inference), the generated stain_positivity view and a rule file that
-- creates nucleus_cell_type and cell_type_hierarchy (e.g. sql/cell_type_rules.sql).

-- Every nucleus with its class, the class index and the coarse hierarchy beside it.
CREATE OR REPLACE VIEW nucleus_classes AS
SELECT
    p.nucleus_id,
    p.slide_id,
    c.cell_type,
    h.class_index,
    h.compartment,
    h.lineage,
    c.excluded_at_step,
    p.threshold_version
FROM stain_positivity AS p
JOIN nucleus_cell_type AS c ON c.nucleus_id = p.nucleus_id
LEFT JOIN cell_type_hierarchy AS h ON h.cell_type = c.cell_type;

-- Nuclei per slide and class (classes with no nucleus on a slide are listed with 0).
CREATE OR REPLACE VIEW cell_type_counts_per_slide AS
WITH slides AS (SELECT DISTINCT slide_id FROM stain_positivity),
counted AS (
    SELECT slide_id, cell_type, count(*) AS n_nuclei
    FROM nucleus_classes
    WHERE cell_type IS NOT NULL
    GROUP BY slide_id, cell_type
)
SELECT
    s.slide_id,
    h.cell_type,
    h.class_index,
    h.compartment,
    h.lineage,
    coalesce(c.n_nuclei, 0) AS n_nuclei,
    coalesce(c.n_nuclei, 0) / nullif(sum(coalesce(c.n_nuclei, 0)) OVER (PARTITION BY s.slide_id), 0)
        AS fraction_of_labelled
FROM slides AS s
CROSS JOIN cell_type_hierarchy AS h
LEFT JOIN counted AS c ON c.slide_id = s.slide_id AND c.cell_type = h.cell_type
ORDER BY s.slide_id, h.class_index;

-- Nuclei per patient and class, through the slide manifest (patient_id NULL: slide not in it).
CREATE OR REPLACE VIEW cell_type_counts_per_patient AS
SELECT
    m.patient_id,
    c.cell_type,
    c.class_index,
    c.compartment,
    c.lineage,
    count(DISTINCT c.slide_id) AS n_slides,
    sum(c.n_nuclei) AS n_nuclei
FROM cell_type_counts_per_slide AS c
LEFT JOIN slide_manifest AS m ON m.slide_id = c.slide_id
GROUP BY m.patient_id, c.cell_type, c.class_index, c.compartment, c.lineage
ORDER BY m.patient_id, c.class_index;

-- Nuclei per class over the whole cohort.
CREATE OR REPLACE VIEW cell_type_counts AS
SELECT
    cell_type,
    class_index,
    compartment,
    lineage,
    sum(n_nuclei) AS n_nuclei,
    count(*) FILTER (WHERE n_nuclei > 0) AS n_slides,
    sum(n_nuclei) / nullif(sum(sum(n_nuclei)) OVER (), 0) AS fraction_of_labelled
FROM cell_type_counts_per_slide
GROUP BY cell_type, class_index, compartment, lineage
ORDER BY class_index;

-- The coarse hierarchy per slide: epithelial / connective / immune, and lymphoid / myeloid.
CREATE OR REPLACE VIEW compartment_counts_per_slide AS
SELECT
    slide_id,
    compartment,
    lineage,
    sum(n_nuclei) AS n_nuclei
FROM cell_type_counts_per_slide
GROUP BY slide_id, compartment, lineage
ORDER BY slide_id, compartment, lineage NULLS FIRST;

-- How many nuclei each exclusion step removed, per slide.
CREATE OR REPLACE VIEW exclusion_counts_per_slide AS
SELECT slide_id, excluded_at_step, count(*) AS n_nuclei
FROM nucleus_classes
WHERE excluded_at_step IS NOT NULL
GROUP BY slide_id, excluded_at_step
ORDER BY slide_id, excluded_at_step;

-- The thresholds behind the labels, one row per slide: how many stains are manual or automatic.
CREATE OR REPLACE VIEW threshold_sources_per_slide AS
SELECT
    slide_id,
    any_value(threshold_version) AS threshold_version,
    count(*) FILTER (WHERE source = 'manual') AS n_manual,
    count(*) FILTER (WHERE source = 'auto') AS n_auto
FROM stain_thresholds
GROUP BY slide_id
ORDER BY slide_id;

-- Predicted classes beside the MxIF-derived labels, for the nuclei that have labels
-- (cell_type NULL: excluded by the rules; agrees NULL then).
CREATE OR REPLACE VIEW nucleus_inference_vs_labels AS
SELECT
    i.nucleus_id,
    i.slide_id,
    l.cell_type,
    l.class_index,
    l.excluded_at_step,
    i.predicted_cell_type,
    i.predicted_index,
    i.probability,
    i.models,
    CASE WHEN l.class_index >= 0 THEN l.class_index = i.predicted_index END AS agrees
FROM nucleus_inference AS i
JOIN nucleus_labels AS l ON l.nucleus_id = i.nucleus_id;

-- Per slide: nuclei predicted, how many have a label, and how often prediction and label agree.
CREATE OR REPLACE VIEW inference_agreement_per_slide AS
SELECT
    i.slide_id,
    count(*) AS n_predicted,
    count(l.class_index) FILTER (WHERE l.class_index >= 0) AS n_labelled,
    count(*) FILTER (WHERE l.class_index = i.predicted_index) AS n_agree,
    count(*) FILTER (WHERE l.class_index = i.predicted_index)
        / nullif(count(l.class_index) FILTER (WHERE l.class_index >= 0), 0) AS agreement
FROM nucleus_inference AS i
LEFT JOIN nucleus_labels AS l ON l.nucleus_id = i.nucleus_id
GROUP BY i.slide_id
ORDER BY i.slide_id;
