-- Every threshold in use, as rows of the manual thresholds CSV (slide_id, stain, threshold,
-- set_by, note) that a person can correct and save as the manual thresholds; an automatic
-- threshold's note names its method.
SELECT
    slide_id,
    stain,
    threshold,
    set_by,
    CASE WHEN source = 'auto' THEN 'suggested: ' || method ELSE note END AS note
FROM stain_thresholds
ORDER BY slide_id, stain_key;
