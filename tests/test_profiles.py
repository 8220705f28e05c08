from pathlib import Path

import pytest

from transfer_lib.train.profiles import (
    PROFILE_NAMES,
    PROFILES,
    active_profile,
    find_rafdb,
    get_profile,
    project_root,
)


def test_paper_profile_is_the_authors_recipe():
    p = PROFILES["paper"]
    assert (p.size, p.epochs, p.batch_size, p.optimiser) == ("paper", 40, 64, "sgd")
    assert (p.momentum, p.weight_decay, p.augment) == (0.9, 1e-4, "paper")
    # 1e-4 for epochs 0-14, 1e-5 for 15-29, 1e-6 for 30-39
    assert [p.lr_at(e) for e in (0, 14.99, 15, 29.5, 30, 39.9)] == pytest.approx(
        [1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6])


def test_cpu_and_smoke_profiles_are_small_and_cosine():
    for name in ("cpu", "smoke"):
        p = PROFILES[name]
        assert p.size == "tiny" and p.schedule == "cosine"
        lrs = [p.lr_at(e) for e in [p.warmup_epochs + i * 0.5 for i in range(2 * p.epochs)]]
        assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # decays after warmup
    assert PROFILES["smoke"].synthetic_train < PROFILES["cpu"].synthetic_train


def test_warmup_starts_low():
    p = PROFILES["cpu"]
    assert p.lr_at(0.0) < 0.01 * p.lr
    assert p.lr_at(p.warmup_epochs) == pytest.approx(p.lr)


def test_active_profile_reads_env(monkeypatch):
    monkeypatch.setenv("TRANSFER_PROFILE", "smoke")
    assert active_profile().name == "smoke"
    monkeypatch.setenv("TRANSFER_PROFILE", "huge")
    with pytest.raises(ValueError, match="huge.*smoke, cpu, paper"):
        active_profile()
    monkeypatch.delenv("TRANSFER_PROFILE")
    monkeypatch.setattr("transfer_lib.train.profiles._cuda_available", lambda: False)
    assert active_profile().name == "cpu"


def test_bad_transfer_profile_says_what_to_do(monkeypatch, capsys, tmp_path):
    from transfer_lib.cli import main

    monkeypatch.setenv("TRANSFER_PROFILE", "bogus")
    with pytest.raises(ValueError, match="set it to one of them or unset it"):
        active_profile()
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "TRANSFER_PROFILE='bogus'" in err and "unset it" in err and "Traceback" not in err


def test_active_profile_paper_on_gpu_with_rafdb(monkeypatch, tmp_path):
    (tmp_path / "basic" / "EmoLabel").mkdir(parents=True)
    (tmp_path / "basic" / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 1\n")
    monkeypatch.delenv("TRANSFER_PROFILE", raising=False)
    monkeypatch.setenv("TRANSFER_RAFDB", str(tmp_path))
    monkeypatch.setattr("transfer_lib.train.profiles._cuda_available", lambda: True)
    assert find_rafdb() == tmp_path
    assert active_profile().name == "paper"


def _layout(root):
    (root / "basic" / "EmoLabel").mkdir(parents=True)
    (root / "basic" / "EmoLabel" / "list_patition_label.txt").write_text("")


def test_find_rafdb_none_and_relative(monkeypatch, tmp_path):
    monkeypatch.delenv("TRANSFER_RAFDB", raising=False)
    # no package-root fallback here: this checkout may hold a data/RAF-DB of its own
    monkeypatch.setattr("transfer_lib.train.profiles.__file__",
                        str(tmp_path / "pkg" / "train" / "profiles.py"))
    monkeypatch.chdir(tmp_path)
    assert find_rafdb() is None
    (tmp_path / "data" / "rafdb" / "basic" / "EmoLabel").mkdir(parents=True)
    (tmp_path / "data" / "rafdb" / "basic" / "EmoLabel" / "list_patition_label.txt").write_text("")
    assert find_rafdb().resolve() == (tmp_path / "data" / "rafdb").resolve()


def test_project_root_is_the_checkout_from_any_working_directory(monkeypatch, tmp_path):
    """The module sits two folders below the checkout (transfer_lib/train/profiles.py): moving
    it must move this arithmetic with it, or a clone run from elsewhere loses its data/."""
    monkeypatch.chdir(tmp_path)
    assert project_root() == Path(__file__).resolve().parents[1]


def test_get_profile_and_replace_validate():
    assert set(PROFILE_NAMES) == set(PROFILES)
    with pytest.raises(ValueError, match="smoke, cpu, paper"):
        get_profile("nope")
    p = get_profile("smoke").replace(epochs=5, lr=None)
    assert p.epochs == 5 and p.lr == PROFILES["smoke"].lr
    with pytest.raises(ValueError, match="optimiser"):
        get_profile("smoke").replace(optimiser="rmsprop")


def test_find_rafdb_from_inside_the_book(monkeypatch, tmp_path):
    """Chapters run from book/: data/RAF-DB of the project root (the folder with _config.yml /
    pyproject.toml above the working directory) is found; then the package's own checkout."""
    monkeypatch.delenv("TRANSFER_RAFDB", raising=False)
    monkeypatch.setattr("transfer_lib.train.profiles.__file__",
                        str(tmp_path / "pkg" / "train" / "profiles.py"))
    project = tmp_path / "project"
    (project / "book" / "src").mkdir(parents=True)
    monkeypatch.chdir(project / "book" / "src")
    _layout(project / "data" / "RAF-DB")
    assert find_rafdb() is None  # no marker yet: not a project root
    (project / "_config.yml").write_text("title: x\n")
    assert find_rafdb() == project / "data" / "RAF-DB"
    # an editable install: the folder holding the package's pyproject.toml, from anywhere
    (project / "_config.yml").unlink()
    (project / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("transfer_lib.train.profiles.__file__",
                        str(project / "transfer_lib" / "train" / "profiles.py"))
    assert find_rafdb() == project / "data" / "RAF-DB"


def test_gpu_profile_is_the_cpu_recipe_at_rafdb_size():
    p, cpu = PROFILES["gpu"], PROFILES["cpu"]
    assert PROFILE_NAMES[-1] == "gpu" and get_profile("gpu") is p
    assert (p.size, p.synthetic_train, p.synthetic_test) == ("small", 12_271, 3_068)
    assert (p.optimiser, p.schedule) == (cpu.optimiser, cpu.schedule) == ("adamw", "cosine")
    assert p.synthetic_root == "data/synthetic-12271-3068"
    assert p.lr_at(0.0) < 0.01 * p.lr and p.lr_at(p.epochs) < p.lr_at(p.epochs / 2) < p.lr


def test_active_profile_gpu_without_rafdb(monkeypatch, tmp_path):
    monkeypatch.delenv("TRANSFER_PROFILE", raising=False)
    monkeypatch.delenv("TRANSFER_RAFDB", raising=False)
    monkeypatch.setattr("transfer_lib.train.profiles.find_rafdb", lambda extra=None: None)
    monkeypatch.setattr("transfer_lib.train.profiles._cuda_available", lambda: True)
    assert active_profile().name == "gpu"
    monkeypatch.setattr("transfer_lib.train.profiles._cuda_available", lambda: False)
    assert active_profile().name == "cpu"


def test_one_project_root_for_data_weights_and_runs(monkeypatch, tmp_path):
    from transfer_lib.book import viz
    from transfer_lib.train.profiles import project_root
    from transfer_lib.weights import pretrain

    assert viz.project_root is project_root and pretrain.project_root is project_root
    # a pip install (no pyproject.toml beside the package), chapters run from book/src
    monkeypatch.setattr("transfer_lib.train.profiles.__file__", str(tmp_path / "site" / "pkg" / "p.py"))
    project = tmp_path / "project"
    (project / "book" / "src").mkdir(parents=True)
    (project / "_config.yml").write_text("title: x\n")
    monkeypatch.chdir(project / "book" / "src")
    assert project_root() == project
    assert viz.book_run_dir("x", "smoke") == project / "runs" / "book" / "smoke" / "x"
    (project / "weights").mkdir()
    (project / "weights" / "w.pth").write_bytes(b"0")
    monkeypatch.delenv("X_WEIGHTS", raising=False)
    assert viz.find_weights("w.pth", "X_WEIGHTS") == project / "weights" / "w.pth"
    (project / "_config.yml").unlink()
    assert project_root() == project / "book" / "src"  # no marker: the working directory


def test_transfer_rafdb_that_is_not_rafdb_is_said_once(monkeypatch, tmp_path, capsys):
    # it was passed over without a word, and the book trained on the synthetic set
    from transfer_lib.train import profiles
    from transfer_lib.utils.errors import TransferError

    monkeypatch.setattr(profiles, "_RAFDB_WARNED", set())
    monkeypatch.setattr("transfer_lib.train.profiles.__file__",
                        str(tmp_path / "pkg" / "train" / "profiles.py"))
    monkeypatch.chdir(tmp_path)
    wrong = tmp_path / "not-rafdb"
    wrong.mkdir()
    monkeypatch.setenv("TRANSFER_RAFDB", str(wrong))
    assert find_rafdb() is None and find_rafdb() is None
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1, err
    assert (f"TRANSFER_RAFDB={wrong} is not a RAF-DB folder: expected RAF-DB's root, the folder "
            f"holding basic/EmoLabel/list_patition_label.txt") in err and "unset it" in err
    with pytest.raises(TransferError, match="TRANSFER_RAFDB=.* is not a RAF-DB folder"):
        find_rafdb(required=True)
    monkeypatch.setenv("TRANSFER_RAFDB", str(tmp_path / "missing"))
    assert find_rafdb() is None
    assert "names nothing (no such folder)" in capsys.readouterr().err
    monkeypatch.delenv("TRANSFER_RAFDB")  # unset: nothing said, as before
    assert find_rafdb() is None and capsys.readouterr().err == ""
    _layout(wrong)  # now it is RAF-DB
    monkeypatch.setenv("TRANSFER_RAFDB", str(wrong))
    assert find_rafdb() == wrong and find_rafdb(required=True) == wrong
    assert capsys.readouterr().err == ""
