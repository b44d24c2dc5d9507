"""Partitions shared across stages: one per slide (registered at run time) and one per fold."""

import dagster as dg

N_FOLDS = 5

slide_partitions = dg.DynamicPartitionsDefinition(name="slides")
fold_partitions = dg.StaticPartitionsDefinition([str(f) for f in range(N_FOLDS)])
