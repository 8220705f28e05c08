"""Weights: every way a model's parameters come in or go out.

* :mod:`~transfer_lib.weights.checkpoint`: this project's own checkpoints, written atomically
  and loaded safely (``weights_only=True``, the config validated before anything is built);
* :mod:`~transfer_lib.weights.convert`: foreign checkpoints (face.evoLVe's IR-50, timm's
  ViT-Small, the authors' released TransFER) converted into this project's models;
* :mod:`~transfer_lib.weights.fetch`: getting the pretrained files the paper starts from
  (``python -m transfer_lib weights fetch vit|ir50``);
* :mod:`~transfer_lib.weights.pretrain`: pretraining the small stem on synthetic identities,
  this project's stand-in for the IR-50's face-recognition weights
  (``python -m transfer_lib pretrain``).
"""
