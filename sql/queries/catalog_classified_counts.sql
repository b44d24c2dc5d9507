-- Nuclei the catalog classified and nuclei with thresholds (equal when every nucleus with
-- thresholds is classified once).
SELECT
    (SELECT count(*) FROM nucleus_classes) AS classes,
    (SELECT count(*) FROM stain_positivity) AS nuclei;
