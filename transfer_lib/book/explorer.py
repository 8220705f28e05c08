"""An explorer that works in the book's static HTML (chapter 8, ``book/08_attention.ipynb``).

A published page has no Python behind it, so every state its controls offer is computed in
advance and written into the page: one select for the face, one checkbox per switch (a LANet
branch, an attention head), and a few lines of JavaScript that look the chosen state up. The same
output runs in Jupyter and Colab, where a cell's HTML output runs its script too.

The states are indexed by bits: state ``s`` has switch ``i`` on when bit ``i`` of ``s`` is set,
so ``probabilities[face, s]`` is the prediction with exactly those switches on. The picture may
depend on the first ``image_switches`` switches only (the LANet maps do not depend on the
heads, which act later), so ``images[face, s & (2**image_switches - 1)]`` is shown.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from collections.abc import Sequence

import numpy as np

__all__ = ["StaticExplorer", "switch_states"]

_STYLE = """
<style>
.transfer-explorer {font-size: 0.9em; margin: 0.5em 0 1em 0}
.transfer-explorer .tx-controls {display: flex; flex-wrap: wrap; gap: 0.3em 1em; align-items: center;
  margin-bottom: 0.6em}
.transfer-explorer .tx-controls label {white-space: nowrap; cursor: pointer}
.transfer-explorer .tx-view {display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start}
.transfer-explorer figure {margin: 0}
.transfer-explorer img {width: 168px; height: 168px; image-rendering: pixelated; display: block}
.transfer-explorer figcaption {max-width: 168px; font-size: 0.95em}
.transfer-explorer .tx-bars {display: grid; grid-template-columns: max-content 260px 4.5em;
  gap: 0.15em 0.5em; align-items: center}
.transfer-explorer .tx-bar {height: 0.9em; background: #9ab}
.transfer-explorer .tx-bar.tx-true {background: #2f5a8a}
.transfer-explorer .tx-value {text-align: right; font-variant-numeric: tabular-nums}
</style>
"""

_SCRIPT = """
<script>
(function () {
  var root = document.getElementById("%(id)s");
  var data = JSON.parse(document.getElementById("%(id)s-data").textContent);
  var face = root.querySelector("select");
  var boxes = root.querySelectorAll("input[type=checkbox]");
  var img = root.querySelector("img");
  var caption = root.querySelector("figcaption");
  var bars = root.querySelectorAll(".tx-bar");
  var values = root.querySelectorAll(".tx-value");
  function update() {
    var f = Number(face.value), state = 0;
    boxes.forEach(function (box, i) { if (box.checked) { state += 1 << i; } });
    var p = data.probabilities[f][state];
    var best = p.indexOf(Math.max.apply(null, p));
    img.src = data.images[f][state & ((1 << data.image_switches) - 1)];
    caption.textContent = data.faces[f] + " -> " + data.classes[best];
    p.forEach(function (v, k) {
      bars[k].classList.toggle("tx-true", data.true !== null && k === data.true[f]);
      bars[k].style.width = (v / 10) + "%%";
      values[k].textContent = (v / 10).toFixed(1) + " %%";
    });
    root.setAttribute("data-state", f + ":" + state);
  }
  face.addEventListener("change", update);
  boxes.forEach(function (box) { box.addEventListener("change", update); });
  update();
})();
</script>
"""


def switch_states(n: int):
    """All 2**n on/off states of ``n`` switches as a (2**n, n) 0/1 tensor: row ``s`` has switch
    ``i`` on when bit ``i`` of ``s`` is set (row 0: all off; the last row: all on)."""
    import torch

    s = torch.arange(2**n)[:, None]
    return (s >> torch.arange(n)) & 1


def _data_uri(image: np.ndarray) -> str:
    """An (H, W, 3) image in [0, 1] (or uint8) as a JPEG data URI."""
    from PIL import Image

    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class StaticExplorer:
    """Faces, switches and precomputed results, shown as HTML with its own data and script.

    ``faces``: a label per face; ``switches``: a label per checkbox; ``class_names``: the bars;
    ``probabilities``: (faces, 2**switches, classes), each row summing to 1; ``images``:
    (faces, 2**image_switches) pictures, (H, W, 3) in [0, 1] or uint8. ``true_classes``, when
    given, marks each face's own class in a darker bar.
    """

    def __init__(self, faces: Sequence[str], switches: Sequence[str], class_names: Sequence[str],
                 probabilities, images: Sequence[Sequence[np.ndarray]], image_switches: int,
                 true_classes: Sequence[int] | None = None, title: str = "") -> None:
        p = np.asarray(probabilities, dtype=np.float64)
        n_faces, n_switches = len(faces), len(switches)
        if p.shape != (n_faces, 2**n_switches, len(class_names)):
            raise ValueError(f"probabilities has shape {p.shape}; expected (faces, 2**switches, "
                             f"classes) = ({n_faces}, {2**n_switches}, {len(class_names)})")
        if not 0 <= image_switches <= n_switches:
            raise ValueError(f"image_switches={image_switches} must lie in 0..{n_switches}")
        if len(images) != n_faces or any(len(row) != 2**image_switches for row in images):
            raise ValueError(f"images must hold {2**image_switches} pictures for each of the "
                             f"{n_faces} faces")
        if not np.allclose(p.sum(-1), 1.0, atol=1e-3):
            raise ValueError("every row of probabilities must sum to 1")
        self.faces, self.switches = list(faces), list(switches)
        self.class_names = list(class_names)
        self.true_classes = list(true_classes) if true_classes is not None else None
        self.title = title
        self.data = {
            "faces": self.faces,
            "classes": self.class_names,
            "image_switches": image_switches,
            # per mille as integers: a tenth of a percent is all the bars show
            "probabilities": np.rint(1000 * p).astype(int).tolist(),
            "images": [[_data_uri(im) for im in row] for row in images],
            "true": self.true_classes,
        }

    def _repr_html_(self) -> str:
        payload = json.dumps(self.data, separators=(",", ":"))
        ident = "tx-explorer-" + hashlib.sha1(payload.encode()).hexdigest()[:10]
        options = "".join(f'<option value="{i}">{html.escape(f)}</option>'
                          for i, f in enumerate(self.faces))
        boxes = "".join(f'<label><input type="checkbox" checked> {html.escape(s)}</label>'
                        for s in self.switches)
        rows = "".join(
            f'<span>{html.escape(c)}</span><span><div class="tx-bar" data-class="{k}"></div>'
            f'</span><span class="tx-value"></span>' for k, c in enumerate(self.class_names))
        title = f"<strong>{html.escape(self.title)}</strong>" if self.title else ""
        body = (f'<div class="transfer-explorer" id="{ident}">{title}'
                f'<div class="tx-controls"><label>face <select>{options}</select></label>{boxes}'
                f'</div><div class="tx-view"><figure><img alt="the chosen face with its fused '
                f'LANet map"><figcaption></figcaption></figure><div class="tx-bars">{rows}</div>'
                f'</div></div>')
        # the data sits in a JSON script element, which the browser does not run; "</" is escaped
        # so that no string in it can close the element
        safe = payload.replace("</", "<\\/")
        data = f'<script type="application/json" id="{ident}-data">{safe}</script>'
        return _STYLE + body + data + _SCRIPT % {"id": ident}

    def __repr__(self) -> str:
        return (f"StaticExplorer({len(self.faces)} faces x {2 ** len(self.switches)} switch "
                f"states, {len(self.class_names)} classes)")
