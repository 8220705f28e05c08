"""The book's helpers: the experiments the chapters run and the pictures they draw.

Not needed to build, train or use a model; the chapters in ``book/`` import them.

* :mod:`~transfer_lib.book.viz`: image and map grids, overlays, the pipeline diagram, tables;
* :mod:`~transfer_lib.book.explorer`: the attention explorer that works in the static HTML;
* :mod:`~transfer_lib.book.ablate`: the paper's ablation over seeds, with paired intervals
  (``python -m transfer_lib ablate``);
* :mod:`~transfer_lib.book.attention`: where the ablation's models look
  (``python -m transfer_lib attention``);
* :mod:`~transfer_lib.book.suite`: the pre-registered suite of task variants, controls and
  hypotheses (``python -m transfer_lib.book.suite``).
"""
