-- Nuclei whose class or threshold version in the catalog differs from the materialised label
-- table (zero when the catalog runs the rules the label table was made with).
SELECT count(*)
FROM nucleus_classes AS v
JOIN nucleus_labels AS l USING (nucleus_id)
WHERE v.cell_type IS DISTINCT FROM l.cell_type
    OR v.threshold_version IS DISTINCT FROM l.threshold_version;
