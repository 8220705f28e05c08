"""transfer_lib: TransFER (Xue, Wang, Guo, ICCV 2021) for facial expression recognition.

    >>> import transfer_lib
    >>> model = transfer_lib.build_model("transfer", size="tiny")

Importing the package pins PyTorch's CPU kernels to AVX2 and fixed threads before torch loads,
so a seed gives the same numbers on every x86 CPU (:mod:`transfer_lib.utils.kernels`; set
``TRANSFER_NATIVE=1`` for the CPU's own, faster kernels). The model classes load lazily, so
that the command line can choose before torch is imported.
"""

from transfer_lib.utils import kernels as _kernels

_kernels.pin()

__version__ = "0.1.0"
__all__ = ["TransFER", "TransFERConfig", "build_model", "__version__"]


def __getattr__(name: str):
    if name in ("TransFER", "TransFERConfig", "build_model"):
        from transfer_lib import models

        return getattr(models, name)
    raise AttributeError(f"module 'transfer_lib' has no attribute {name!r}")
