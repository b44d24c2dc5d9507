"""The science of nucleus-subtyping as plain functions: no Dagster, no file paths."""
