"""The paper recipe as the authors ran it: its profile's switches, the refusal to train it from
scratch silently, and the projection's initialisation (Paddle's or PyTorch's)."""

import json
import math

import pytest
import torch

import transfer_lib.train as tr
from transfer_lib.cli import main
from transfer_lib.data import transforms as T
from transfer_lib.models import build_model, make_config, model_from_config
from transfer_lib.models.config import TransFERConfig
from transfer_lib.models.transfer import init_projection_as_paddle
from transfer_lib.train import TrainConfig, build_training_model, missing_initialisations
from transfer_lib.train.profiles import ERASINGS, PROFILES, RANDAUGMENTS, get_profile
from transfer_lib.utils.errors import TransferError


def test_profiles_choose_the_authors_augmentation_and_init():
    paper = PROFILES["paper"]
    assert (paper.randaugment, paper.erasing, paper.proj_init) == ("paddle", "authors", "paddle")
    assert PROFILES["gpu"].proj_init == "paddle"
    for name in ("cpu", "smoke"):  # the committed ablation's init, and crop + flip only
        assert PROFILES[name].proj_init == "torch" and PROFILES[name].augment == "light"
    assert RANDAUGMENTS == T.RANDAUGMENTS and ERASINGS == T.ERASINGS  # the CLI's copies agree
    with pytest.raises(ValueError, match="erasing='sometimes'"):
        paper.replace(erasing="sometimes")


def test_the_switches_reach_both_pipelines():
    mc = make_config("transfer", "tiny")
    aug = tr.batch_augment_for(mc, "paper", randaugment="torchvision", erasing="off")
    assert (aug.randaugment, aug.erasing) == ("torchvision", "off")
    assert "randaugment=paddle" in repr(tr.batch_augment_for(mc, "paper"))
    tf = tr.train_transform_for(mc, "paper", "paddle", "config")
    assert isinstance(tf.transforms[2], T.PaddleRandAugment) and tf.transforms[-1].layout == "chw"
    cfg = TrainConfig(profile="paper", randaugment="torchvision", erasing="off", from_scratch=True)
    prof = cfg.profile_obj()
    assert (prof.randaugment, prof.erasing) == ("torchvision", "off")


def test_cli_passes_the_switches(monkeypatch):
    seen = []
    summary = dict.fromkeys(("best_accuracy", "final_accuracy", "mean_class_accuracy", "epochs",
                             "wall_seconds", "device", "run_dir"), 0)
    monkeypatch.setattr(tr, "_train", lambda cfg, ctx: seen.append(cfg) or summary)
    rc = main(["train", "--profile", "paper", "--from-scratch", "--randaugment", "torchvision",
               "--erasing", "config", "--proj-init", "torch", "--device", "cpu"])
    assert rc == 0
    prof = seen[-1].profile_obj()
    assert (prof.randaugment, prof.erasing, prof.proj_init) == ("torchvision", "config", "torch")
    assert seen[-1].from_scratch


def test_paper_profile_without_weights_exits_2_naming_both_files(capsys, tmp_path):
    rc = main(["train", "--profile", "paper", "--out", str(tmp_path / "p"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    for words in ("--ir50", "--vit", "face.evoLVe", "MS-Celeb-1M", "timm", "ViT-Small",
                  "--from-scratch"):
        assert words in err, words
    assert not (tmp_path / "p").exists()
    rc = main(["train", "--profile", "paper", "--ir50", "x.pth", "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert rc == 2 and "--vit" in err and "missing: --ir50" not in err


def test_which_initialisations_a_paper_run_needs():
    def missing(**kw):
        cfg = TrainConfig(**kw)
        return [flag for flag, _ in missing_initialisations(cfg, cfg.profile_obj())]

    assert missing(profile="paper") == ["--ir50", "--vit"]
    assert missing(profile="paper", variant="ir50") == ["--ir50"]  # the CNN has no transformer
    assert missing(profile="paper", ir50="a", vit="b") == []
    assert missing(profile="paper", from_scratch=True) == []
    assert missing(profile="cpu") == [] and missing(profile="smoke") == []
    with pytest.raises(TransferError, match="from_scratch=True"):
        tr.train(profile="paper", progress=False)


def test_from_scratch_lets_a_paper_run_start(monkeypatch):
    started = []
    monkeypatch.setattr(tr, "_train", lambda cfg, ctx: started.append(cfg) or {"ok": True})
    assert tr.train(profile="paper", from_scratch=True, device="cpu") == {"ok": True}
    assert started[-1].from_scratch and "from_scratch" in tr._EXECUTION_FIELDS


# ---------------------------------------------------------------------------------------------
# The projection's initialisation
# ---------------------------------------------------------------------------------------------
def _paper_projections():
    """The paper's projection, Conv2d(256 -> 768, 1x1), as each init leaves it (building the
    whole 65 M model takes seconds; the tiny model checks that the model applies the init)."""
    torch.manual_seed(0)
    paddle = torch.nn.Conv2d(256, 768, 1)
    init_projection_as_paddle(paddle)
    return paddle, torch.nn.Conv2d(256, 768, 1)


@pytest.mark.parametrize("size", ["paper", "tiny"])
def test_projection_init_paddle_is_kaiming_normal_with_zero_bias(size):
    if size == "paper":
        paddle, torch_init = _paper_projections()
        assert make_config("transfer", "paper").stem_channels == paddle.in_channels
    else:
        torch.manual_seed(0)
        paddle = build_model("transfer", size, proj_init="paddle").projection
        torch.manual_seed(0)
        torch_init = build_model("transfer", size, proj_init="torch").projection
    fan_in = paddle.in_channels  # a 1x1 kernel
    w = paddle.weight.detach()
    assert w.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    assert abs(w.mean().item()) < 0.1 * math.sqrt(2 / fan_in)
    assert torch.equal(paddle.bias.detach(), torch.zeros_like(paddle.bias))
    # PyTorch's default: kaiming_uniform(a = sqrt 5), std sqrt(1 / (3 fan_in)); bias not zero
    wt = torch_init.weight.detach()
    assert wt.std().item() == pytest.approx(math.sqrt(1 / (3 * fan_in)), rel=0.05)
    assert wt.abs().max().item() <= 1 / math.sqrt(fan_in) + 1e-6 and torch_init.bias.abs().sum() > 0
    assert w.std() / wt.std() == pytest.approx(math.sqrt(6), rel=0.08)  # 2.4x larger


def test_paddle_init_changes_nothing_but_the_projection():
    torch.manual_seed(1)
    a = build_model("transfer", "tiny", proj_init="paddle").state_dict()
    torch.manual_seed(1)
    b = build_model("transfer", "tiny", proj_init="torch").state_dict()
    differ = {k for k in a if not torch.equal(a[k], b[k])}
    assert differ == {"projection.weight", "projection.bias"}


def test_profiles_give_their_init_and_old_configs_read_as_torch():
    assert TransFERConfig().proj_init == "paddle"  # the authors'
    old = make_config("transfer", "tiny").to_dict()
    del old["proj_init"]  # a checkpoint written before the switch existed
    assert TransFERConfig.from_dict(old).proj_init == "torch"
    names = list(TransFERConfig().class_names)
    for profile, init in (("smoke", "torch"), ("cpu", "torch"), ("gpu", "paddle")):
        cfg = TrainConfig(profile=profile, size="tiny")
        _, mc = build_training_model(cfg, cfg.profile_obj(), names)
        assert mc.proj_init == init, profile
    cfg = TrainConfig(profile="smoke", proj_init="paddle")
    _, mc = build_training_model(cfg, cfg.profile_obj(), names)
    assert mc.proj_init == "paddle"
    assert model_from_config(mc).config.proj_init == "paddle"


def test_smoke_run_records_the_recipe(tmp_path):
    """config.json holds the switches, and the cpu/smoke model starts as before (torch init)."""
    out = tmp_path / "s"
    tr.train(profile="smoke", out=str(out), epochs=1, max_steps=1, progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["proj_init"] == "torch"
    assert {"randaugment", "erasing", "proj_init"} <= set(config["profile"])
    assert get_profile("smoke").erasing == config["profile"]["erasing"]
