"""H&E nucleus segmentation learnt by the project: the he_nucleus_model training asset."""
