"""The errors of the storage layer."""


class StoreError(ValueError):
    """A file that is not a readable store of this package: truncated, damaged, written by
    another program or with another schema version. The message names the file and the
    problem; the HDF5 error, if any, is chained as ``__cause__``."""


class NotStored(KeyError):
    """A missing key or observable (a KeyError that ``h5_errors`` lets through)."""
