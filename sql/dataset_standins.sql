-- Empty stand-ins for the catalog's datasets not written yet, so every view still binds: the
-- catalog (storage/catalog.py) creates a dataset's table here when no Parquet file of it exists,
-- and replaces it with a view over the files once they do. One table per dataset view, named
-- as the view; only the column names and types are read.
--
-- nucleus_inference also has one prob_<cell_type> FLOAT column per class of sql/cell_types.csv,
-- in class index order, right after `probability`; storage/catalog.py adds them from the class
-- table so the class names stay in one place.

CREATE TABLE slide_manifest (
    slide_id VARCHAR, patient_id VARCHAR, site VARCHAR, condition VARCHAR, path VARCHAR,
    mpp DOUBLE, modality VARCHAR, content_sha256 VARCHAR
);

CREATE TABLE nucleus_features (nucleus_id BIGINT, slide_id VARCHAR);

CREATE TABLE stain_thresholds (
    slide_id VARCHAR, stain VARCHAR, stain_key VARCHAR, threshold DOUBLE, source VARCHAR,
    method VARCHAR, set_by VARCHAR, note VARCHAR, threshold_version VARCHAR
);

CREATE TABLE nucleus_labels (
    nucleus_id BIGINT, slide_id VARCHAR, cell_type VARCHAR, class_index SMALLINT,
    excluded_at_step SMALLINT, threshold_version VARCHAR
);

CREATE TABLE nucleus_inference (
    nucleus_id BIGINT, slide_id VARCHAR, predicted_index SMALLINT, predicted_cell_type VARCHAR,
    probability FLOAT, models SMALLINT[]
);
