"""fp16 autocast with a GradScaler (GPUs without bf16, e.g. a T4), as far as a CPU can test it:
the automatic choice, and a scaler whose state is checkpointed so that a resume stays exact."""

import pytest
import torch
from train_callbacks import NanAfterStep

from transfer_lib.train import pick_amp_dtype, train
from transfer_lib.utils.errors import TransferError
from transfer_lib.weights.checkpoint import load_checkpoint

FP16 = dict(profile="smoke", progress=False, device="cpu", amp=True, amp_dtype="fp16",
            epochs=2, max_steps=2, seed=3)


@pytest.mark.parametrize("capability,native_bf16,dtype", [
    ((7, 5), False, "fp16"),  # T4: bf16 only through emulation
    ((8, 0), True, "bf16"),   # A100
    ((8, 0), False, "fp16"),  # a CUDA build too old for bf16 on an Ampere GPU
])
def test_fp16_is_chosen_where_cuda_lacks_bf16(monkeypatch, capability, native_bf16, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)

    def is_bf16_supported(including_emulation=True):
        return native_bf16 or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert pick_amp_dtype("cuda") == dtype
    assert pick_amp_dtype("cpu") == "bf16"


@pytest.mark.slow
def test_fp16_scaler_state_is_checkpointed_and_a_resume_is_exact(tmp_path):
    """fp16 autocast and torch.amp.GradScaler("cpu"): the scaler is on, its state (scale,
    growth tracker) goes into last.pt, and a run stopped in epoch 2 and resumed from epoch 1's
    checkpoint ends with the weights, optimiser and scaler state of a run never stopped."""
    whole = tmp_path / "whole"
    train(out=str(whole), **FP16)
    a = load_checkpoint(whole / "last.pt")
    assert a["scaler"] and {"scale", "growth_factor", "_growth_tracker"} <= set(a["scaler"])
    # 4 clean steps counted (or a back-off): a resume with a fresh scaler would count only the
    # 2 steps after it, so the equality below needs the state restored
    assert a["scaler"]["_growth_tracker"] == 4 or a["scaler"]["scale"] < 65536.0

    cut = tmp_path / "cut"
    # NaN weights after epoch 2's first step (global step 3): the loss of step 4 is NaN
    with pytest.raises(TransferError, match=r"not finite.* in epoch 2,"):
        train(out=str(cut), callbacks=[NanAfterStep(3)], **FP16)
    assert load_checkpoint(cut / "last.pt")["epoch"] == 1
    train(out=str(cut), resume=True, **FP16)
    b = load_checkpoint(cut / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["scaler"] == b["scaler"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)

