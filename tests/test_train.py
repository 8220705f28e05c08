"""The trainer in the smoke profile: files of a run, errors, NaN stop, run_or_load."""

import json
import math
import subprocess
import sys

import pytest
import torch
from train_callbacks import NanAfterStep

from transfer_lib.cli import main
from transfer_lib.train import TrainConfig, run_or_load, train
from transfer_lib.train.profiles import get_profile
from transfer_lib.utils.errors import DataError, TransferError
from transfer_lib.weights.checkpoint import load_checkpoint, model_from_checkpoint

SMOKE = dict(profile="smoke", progress=False)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "smoke"
    summary = train(out=str(out), **SMOKE)
    return out, summary


def test_run_directory_holds_everything(smoke_run):
    out, summary = smoke_run
    for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "summary.json"):
        assert (out / name).is_file(), name
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    for x in lines:
        assert {"loss", "lr", "train_accuracy", "test_accuracy", "mean_class_accuracy",
                "val_accuracy", "val_mean_class_accuracy", "images_per_second"} <= set(x)
        assert math.isfinite(x["loss"]) and x["images_per_second"] > 0
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary and summary["complete"]
    for key in ("best_accuracy", "final_accuracy", "mean_class_accuracy", "per_class_accuracy",
                "confusion_matrix", "epochs", "wall_seconds", "device"):
        assert key in summary
    assert summary["final_accuracy"] == lines[-1]["test_accuracy"]
    cm = torch.tensor(summary["confusion_matrix"])
    assert cm.shape == (7, 7) and int(cm.sum()) == 21
    assert summary["final_accuracy"] == pytest.approx(float(cm.diag().sum()) / 21)
    config = json.loads((out / "config.json").read_text())
    assert config["profile"]["name"] == "smoke" and config["model"]["variant"] == "transfer"
    # the synthetic set's own val_ images: as many as its test images, nothing carved from train
    assert config["val_source"] == summary["val_source"] == "file"
    assert config["split_sizes"] == summary["split_sizes"] == {"train": 48, "val": 21, "test": 21}
    # fast is on by default on CUDA, and on a CPU where the profile says so (cpu_fast)
    pipeline = "fast" if torch.cuda.is_available() or get_profile("smoke").cpu_fast else "per-image"
    assert config["pipeline"] == summary["pipeline"] == pipeline
    assert all(x["pipeline"] == pipeline for x in lines)


def test_checkpoints_load_safely(smoke_run):
    out, summary = smoke_run
    last = load_checkpoint(out / "last.pt")  # weights_only=True inside
    assert last["epoch"] == 2 and {"optimizer", "rng", "scaler", "global_step"} <= set(last)
    model = model_from_checkpoint(out / "best.pt")
    assert not model.training and model.config.embed_dim == last["config"]["embed_dim"]
    best = load_checkpoint(out / "best.pt")
    assert best["accuracy"] == pytest.approx(summary["best_accuracy"])  # its test accuracy
    assert best["val_accuracy"] == pytest.approx(summary["best_val_accuracy"])
    assert best["selected_on"] == "validation" and best["val_source"] == "file"
    assert last["best_accuracy"] == best["val_accuracy"]  # what a resume compares against
    assert last["best_selected_on"] == "validation"


def test_summary_reports_best_beside_final(smoke_run):
    """best.pt is picked on the validation split: the summary says so, and names the epoch
    best.pt holds, its validation accuracy and its test figures next to the final epoch's."""
    out, summary = smoke_run
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    best_line = max(lines, key=lambda x: (x["val_accuracy"], -x["epoch"]))
    assert summary["best_epoch"] == best_line["epoch"] == load_checkpoint(out / "best.pt")["epoch"]
    assert summary["best_val_accuracy"] == best_line["val_accuracy"]
    assert summary["best_val_mean_class_accuracy"] == best_line["val_mean_class_accuracy"]
    assert summary["best_accuracy"] == summary["best_test_accuracy"] == best_line["test_accuracy"]
    assert summary["best_mean_class_accuracy"] == best_line["mean_class_accuracy"]
    assert summary["final_epoch"] == summary["epochs"] == lines[-1]["epoch"]
    assert summary["final_accuracy"] == lines[-1]["test_accuracy"]
    assert summary["mean_class_accuracy"] == lines[-1]["mean_class_accuracy"]
    assert summary["best_selected_on"] == "validation"
    assert "validation" in summary["best_selection"] and "test split chooses nothing" in \
        summary["best_selection"]


def test_best_epoch_is_chosen_on_val_and_old_runs_still_read(tmp_path):
    """_best_epoch picks by validation accuracy (the first of equals), never by test; a run
    directory from before the validation split (no val_accuracy) is read as it was chosen."""
    from transfer_lib.train import _best_epoch

    lines = [{"epoch": 1, "val_accuracy": 0.5, "test_accuracy": 0.9},
             {"epoch": 2, "val_accuracy": 0.7, "test_accuracy": 0.4},
             {"epoch": 3, "val_accuracy": 0.7, "test_accuracy": 0.8}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    best = _best_epoch(tmp_path, 3, {})
    assert best["epoch"] == 2 and best["selected_on"] == "validation"
    old = [{"epoch": 1, "test_accuracy": 0.3}, {"epoch": 2, "test_accuracy": 0.6}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in old))
    assert _best_epoch(tmp_path, 2, {})["epoch"] == 2
    assert _best_epoch(tmp_path, 2, {})["selected_on"] == "test"
    # a resume from before the validation split: only the epochs with val_accuracy compete
    mixed = old + [{"epoch": 3, "val_accuracy": 0.2, "test_accuracy": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in mixed))
    assert _best_epoch(tmp_path, 3, {})["epoch"] == 3


def test_training_changes_the_weights(smoke_run):
    out, _ = smoke_run
    from transfer_lib.models import model_from_config
    from transfer_lib.models.config import TransFERConfig

    ckpt = load_checkpoint(out / "last.pt")
    torch.manual_seed(0)
    fresh = model_from_config(TransFERConfig.from_dict(ckpt["config"])).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in ckpt["model"].items())
    assert ckpt["model"]["head.weight"].abs().sum() > 0  # the zero-initialised head learned


def test_run_or_load_skips_a_complete_run(smoke_run, monkeypatch):
    out, summary = smoke_run

    def boom(*a, **k):
        raise AssertionError("run_or_load retrained a complete run")

    monkeypatch.setattr("transfer_lib.train.train", boom)
    assert run_or_load(out, **SMOKE) == summary


def test_run_or_load_refuses_a_complete_run_of_another_recipe(smoke_run, monkeypatch):
    out, _ = smoke_run
    monkeypatch.setattr("transfer_lib.train.train", lambda cfg: {"retrained": True})
    with pytest.raises(TransferError, match=r"another recipe \(epochs: saved 2, asked 3"):
        run_or_load(out, **{**SMOKE, "epochs": 3})
    with pytest.raises(TransferError, match="msad_mode"):
        run_or_load(out, **{**SMOKE, "msad_mode": "token"})
    # how a run executes (progress bar, device) is not part of its recipe
    assert run_or_load(out, **{**SMOKE, "progress": True, "device": "cpu"})["complete"]


def test_run_or_load_trains_when_missing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("transfer_lib.train.train", lambda cfg: calls.append(cfg) or {"x": 1})
    assert run_or_load(tmp_path / "new", TrainConfig(**SMOKE)) == {"x": 1}
    assert calls[0].out == str(tmp_path / "new") and not calls[0].resume


def test_existing_run_needs_resume(smoke_run, capsys):
    out, _ = smoke_run
    assert main(["train", "--profile", "smoke", "--out", str(out), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_cli_train_with_max_steps(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["train", "--profile", "smoke", "--epochs", "1", "--max-steps", "2",
               "--variant", "local_mad", "--map-regulariser", "dropblock", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["variant"] == "local_mad"
    assert summary["map_regulariser"] == "dropblock"
    assert load_checkpoint(out / "last.pt")["global_step"] == 2
    shown = json.loads(printed[printed.rindex("{", 0, printed.index('"best_accuracy"')):])
    assert shown["epochs"] == 1 and shown["final_accuracy"] == summary["final_accuracy"]
    assert shown["best_epoch"] == summary["best_epoch"]
    assert "chosen on the validation split" in printed and "its test accuracy" in printed
    assert "test split" not in printed


@pytest.mark.parametrize("argv, words", [
    (["--profile", "huge"], ["--profile", "smoke", "cpu", "paper"]),
    (["--msad-mode", "tokens"], ["--msad-mode", "head", "token"]),
    (["--variant", "vit"], ["--variant", "vit_fer", "transfer"]),
    (["--dataset", "fer"], ["--dataset", "rafdb", "ferplus"]),
])
def test_bad_arguments_name_themselves(argv, words):
    r = subprocess.run([sys.executable, "-m", "transfer_lib", "train", *argv],
                       capture_output=True, text=True)
    assert r.returncode == 2
    for w in words:
        assert w in r.stderr


def test_bad_numbers_and_missing_data(tmp_path, capsys):
    # refused by the CLI while parsing (cli_types), and by TrainConfig.validate in the library
    assert main(["train", "--profile", "smoke", "--epochs", "0", "--out", str(tmp_path / "a")]) == 2
    assert "error: --epochs 0: expected an integer, 1 or more" in capsys.readouterr().err
    with pytest.raises(TransferError, match="epochs=0 must be at least 1"):
        train(out=str(tmp_path / "a"), epochs=0, **SMOKE)
    assert not (tmp_path / "a").exists()
    assert main(["train", "--profile", "smoke", "--data", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "data set folder not found" in err and "list_patition_label.txt" in err
    with pytest.raises(DataError, match="give --data"):
        train(out=str(tmp_path / "c"), dataset="ferplus", **SMOKE)


def test_missing_pretrained_file(tmp_path):
    with pytest.raises(TransferError, match="--ir50 file not found"):
        train(out=str(tmp_path / "p"), ir50=str(tmp_path / "no.pth"), **SMOKE)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "nan"
    # smoke: 6 steps per epoch with max_steps unset; the weights turn NaN after step 7 (the first
    # of epoch 2), so the loss of step 8 is NaN
    with pytest.raises(TransferError, match=r"not finite.*epoch 2, by step 8.*last good checkpoint"):
        train(out=str(out), callbacks=[NanAfterStep(7)], **SMOKE)
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (out / "summary.json").exists()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_huge_lr_stops_with_a_clear_message(tmp_path, capsys):
    # the CLI refuses an --lr above 10 while parsing; the library trains and stops at the NaN
    rc = main(["train", "--profile", "smoke", "--lr", "1e30", "--epochs", "1", "--no-progress",
               "--out", str(tmp_path / "lr")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error: --lr 1e30: expected" in err and "Traceback" not in err
    with pytest.raises(TransferError, match=r"not finite.*Lower --lr"):
        train(out=str(tmp_path / "lr"), lr=1e30, epochs=1, **SMOKE)


class _DroppingModes:
    """Records, per epoch, whether each dropping module was in training mode during its steps."""

    def __init__(self):
        self.modes = {}

    def on_step_end(self, run, step):
        from transfer_lib.models import regularisers
        self.modes.setdefault(step.epoch, set()).update(m.training for m in regularisers(step.model))


@pytest.mark.parametrize("start, expected", [(0, {1: {True}, 2: {True}}),
                                             (1, {1: {False}, 2: {True}})])
def test_regularise_from_epoch_keeps_the_dropping_off_until_then(tmp_path, start, expected):
    seen = _DroppingModes()
    summary = train(out=str(tmp_path / "r"), max_steps=2, regularise_from_epoch=start,
                    callbacks=[seen], **SMOKE)
    assert seen.modes == expected
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["profile"]["regularise_from_epoch"] == start and summary["complete"]


def test_regularisers_are_the_map_regulariser_and_the_msad_droppings():
    from transfer_lib.models import (
        MultiAttentionDropping,
        MultiHeadSelfAttentionDropping,
        build_model,
        regularisers,
    )
    kinds = lambda variant, **kw: sorted(type(m).__name__ for m in regularisers(  # noqa: E731
        build_model(variant=variant, size="tiny", **kw)))
    assert kinds("ir50") == [] and kinds("vit_fer") == [] and kinds("local") == []
    assert kinds("local_mad") == [MultiAttentionDropping.__name__]
    depth = build_model(variant="transfer", size="tiny").config.depth
    assert kinds("transfer") == [MultiAttentionDropping.__name__] + \
        [MultiHeadSelfAttentionDropping.__name__] * depth
    assert kinds("local_mad", map_regulariser="spatial") == ["Dropout2d"]


def test_update_is_the_manual_step_and_clips_the_global_norm():
    """train.model.update, the one optimiser step of the trainer, pretrain and bench train."""
    from transfer_lib.train.model import update

    def fresh():
        torch.manual_seed(0)
        net = torch.nn.Linear(4, 3)
        return net, torch.optim.SGD(net.parameters(), lr=0.1)

    x, y = torch.randn(8, 4) * 100, torch.randint(3, (8,))
    a, opt_a = fresh()
    loss = torch.nn.functional.cross_entropy(a(x), y)
    opt_a.zero_grad()
    loss.backward()
    opt_a.step()
    b, opt_b = fresh()
    update(opt_b, torch.nn.functional.cross_entropy(b(x), y),
           torch.amp.GradScaler("cpu", enabled=False))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c, opt_c = fresh()
    before = [p.detach().clone() for p in c.parameters()]
    update(opt_c, torch.nn.functional.cross_entropy(c(x), y), grad_clip=0.5)
    step = torch.cat([(p.detach() - q).flatten() for p, q in zip(c.parameters(), before)])
    assert abs(step.norm().item() - 0.1 * 0.5) < 1e-6  # lr x the clipped norm
