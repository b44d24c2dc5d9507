"""Ground-truth synthetic MxIF cohort of colon and ileum mucosa (the embedded demo data).

`plan_cohort(params)` lists the slides; `simulate_slide(spec, params)` renders one slide
(27 stains, nucleus mask, per-nucleus truth); `simulate_cohort(params)` yields them all.
`storage.cohort_files.write_cohort` writes them as OME-TIFFs plus a manifest and truth files.
"""

from pipelines.synthetic._table1 import table1_cell_type
from pipelines.synthetic.cohort import (
    CONDITIONS,
    GENERATOR_VERSION,
    SITES,
    CohortParams,
    SimulatedSlide,
    SlideSpec,
    plan_cohort,
    simulate_cohort,
    simulate_slide,
    truth_frame,
    truth_problems,
)
from pipelines.synthetic.panel import STAINS
from pipelines.synthetic.preview import false_colour

__all__ = [
    "CONDITIONS", "GENERATOR_VERSION", "SITES", "STAINS", "CohortParams", "SimulatedSlide",
    "SlideSpec", "false_colour", "plan_cohort", "simulate_cohort", "simulate_slide",
    "table1_cell_type", "truth_frame", "truth_problems",
]
