import json
import re

import numpy as np
import pytest
import torch

from transfer_lib.book.explorer import StaticExplorer, switch_states


def test_switch_states_bit_order():
    s = switch_states(3)
    assert s.shape == (8, 3)
    assert s[0].tolist() == [0, 0, 0] and s[-1].tolist() == [1, 1, 1]
    assert s[1].tolist() == [1, 0, 0] and s[4].tolist() == [0, 0, 1]  # bit i = switch i
    assert torch.equal((s * (2 ** torch.arange(3))).sum(1), torch.arange(8))


def _explorer(**changes):
    rng = np.random.default_rng(0)
    p = rng.random((2, 8, 3))
    kwargs = dict(faces=["a", "b"], switches=["x", "y", "z"], class_names=["c0", "c1", "c2"],
                  probabilities=p / p.sum(-1, keepdims=True),
                  images=[[rng.random((6, 6, 3)) for _ in range(2)] for _ in range(2)],
                  image_switches=1, true_classes=[0, 2], title="t")
    kwargs.update(changes)
    return StaticExplorer(**kwargs)


def test_html_embeds_every_state_and_one_control_per_switch():
    ex = _explorer()
    page = ex._repr_html_()
    assert page.count("<option") == 2 and page.count('type="checkbox"') == 3
    payload = re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', page, re.S)
    data = json.loads(payload.group(1))
    assert np.array(data["probabilities"]).shape == (2, 8, 3)
    assert all(abs(sum(row) - 1000) <= 2 for face in data["probabilities"] for row in face)
    assert all(uri.startswith("data:image/jpeg;base64,") for row in data["images"] for uri in row)
    assert data["true"] == [0, 2] and data["image_switches"] == 1
    assert page == _explorer()._repr_html_()  # deterministic: rebuilding the page changes nothing


def test_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match="2\\*\\*switches"):
        _explorer(switches=["x", "y"])
    with pytest.raises(ValueError, match="pictures"):
        _explorer(image_switches=2)
    with pytest.raises(ValueError, match="sum to 1"):
        _explorer(probabilities=np.ones((2, 8, 3)))
