-- Nuclei per class over the cohort, for the nucleus_catalog asset's metadata.
SELECT cell_type, compartment, lineage, n_nuclei, n_slides
FROM cell_type_counts;
