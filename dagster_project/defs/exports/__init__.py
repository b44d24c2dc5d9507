"""Exports for the ecosystem's own tools: AnnData (.h5ad) tables and OME-NGFF images."""
