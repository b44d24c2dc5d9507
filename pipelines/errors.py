"""Errors the science layer raises; each message names the slide or stain and says what to do."""


class PipelineError(ValueError):
    """Base class for every error raised by `pipelines/`."""


class StainError(PipelineError):
    """A stain is missing, duplicated or unknown where it is needed."""


class SlideInputError(PipelineError):
    """A slide file cannot be read or lacks what the pipeline needs (pixel size, shape)."""


class ConfigurationError(PipelineError):
    """Parameters that cannot work together (e.g. a cohort too small for the fold layout)."""
