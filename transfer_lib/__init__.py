"""transfer_lib: TransFER (Xue, Wang, Guo, ICCV 2021) for facial expression recognition.

    >>> import transfer_lib
    >>> model = transfer_lib.build_model("transfer", size="tiny")
"""

from transfer_lib.models import TransFER, TransFERConfig, build_model

__version__ = "0.1.0"
__all__ = ["TransFER", "TransFERConfig", "build_model", "__version__"]
