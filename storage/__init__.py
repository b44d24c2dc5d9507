"""Every byte on disk: layouts, Zarr stores, Parquet datasets, the DuckDB catalog, atomic writes."""
