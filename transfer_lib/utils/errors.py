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



def not_a_file(what: str, path) -> str:
    """The start of the message for ``what`` (``--official``) naming no file: "--official
    file not found: PATH", or "--official PATH is a folder, not a file" (a folder was said
    to be "not found")."""
    import os

    if os.path.isdir(path):
        return f"{what} {path} is a folder, not a file"
    return f"{what} file not found: {path}"
