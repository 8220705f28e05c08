"""TransFER's parts, one module each: stem, local CNN (LANet + MAD), MSAD transformer, assembly."""

from transfer_lib.models.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RAFDB_CLASSES,
    TransFERConfig,
    make_config,
)
from transfer_lib.models.local_cnn import LANet, LocalCNN, MultiAttentionDropping, regularisers
from transfer_lib.models.msad import (
    MSADAttention,
    MSADBlock,
    MSADTransformer,
    MultiHeadSelfAttentionDropping,
)
from transfer_lib.models.stem import BottleneckIR, IR50Stem
from transfer_lib.models.transfer import (
    IR50Classifier,
    TransFER,
    TransFEROutput,
    build_model,
    model_from_config,
)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "RAFDB_CLASSES", "TransFERConfig", "make_config",
    "LANet", "LocalCNN", "MultiAttentionDropping", "MSADAttention", "MSADBlock",
    "MSADTransformer", "MultiHeadSelfAttentionDropping", "BottleneckIR", "IR50Stem",
    "IR50Classifier", "TransFER", "TransFEROutput", "build_model", "model_from_config",
    "regularisers",
]
