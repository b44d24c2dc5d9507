"""Errors the storage layer raises; messages name the path or slide and say what to do."""


class StorageError(ValueError):
    """Base class for every error raised by `storage/`."""


class SlideIdError(StorageError):
    """A slide id that is empty, duplicated or would escape the data folder."""


class StoreLayoutError(StorageError):
    """A store on disk is missing, incomplete or written by an incompatible version."""


class CatalogBusyError(StorageError):
    """Another process holds the catalog file open for writing; rebuilding now would break it."""


class ModelWeightsError(StorageError):
    """Model weights named by a setting or an environment variable are missing, or none were
    found where the project looks for them."""
