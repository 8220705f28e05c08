"""Errors meant for the user: the command line prints them without a traceback."""


class TransferError(Exception):
    """A problem with the user's input (data, checkpoint, argument) and how to fix it.

    The message must say what was expected, what was found, and what to do.
    ``python -m transfer_lib`` prints it on one block without a traceback and exits 2.
    """


class DataError(TransferError):
    """A data set is missing, malformed or corrupt."""


class CheckpointError(TransferError):
    """A checkpoint is missing, of the wrong kind, or does not match the model."""

