"""Partitions shared across stages: one per slide (registered at run time) and one per fold."""

import dagster as dg

N_FOLDS = 5

slide_partitions = dg.DynamicPartitionsDefinition(name="slides")
# Real H&E slides (manifest modality "he"): their own chain, never the MxIF cohort's stages.
he_slide_partitions = dg.DynamicPartitionsDefinition(name="he_slides")
fold_partitions = dg.StaticPartitionsDefinition([str(f) for f in range(N_FOLDS)])
