"""Stain thresholds per slide, nucleus labels from Table 1, and the DuckDB catalog."""
