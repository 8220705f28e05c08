import os

import pytest

import transfer_lib  # noqa: F401  (pins the CPU kernels before torch loads)

import torch  # noqa: E402  isort: skip

# Two cores: keep intra-op threads modest so tests run predictably.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# ---------------------------------------------------------------------------------------------
# The fast tier, `make test-fast` (pytest -m fast): the model, the data sets and loaders, the
# statistics, the recipes and the command line's errors, in under a minute on two cores. No
# notebooks, book build, browser, training runs, subprocess-heavy or device-script tests: `make
# test` runs everything. The tier is chosen here, in one place, rather than by markers in the
# test files (several of those are edited by others at any time): the files of FAST_FILES, less
# the tests named under them, which take seconds each (a paper-size model, a training step, a
# subprocess). A new file joins the tier by being listed here.
# ---------------------------------------------------------------------------------------------
FAST_FILES: dict[str, tuple[str, ...]] = {
    "tests/models/test_config_bounds.py": (),
    "tests/models/test_model.py": (
        "test_output_shape_every_variant_and_size[ir50-small]",
        "test_output_shape_every_variant_and_size[ir50-paper]",
        "test_output_shape_every_variant_and_size[vit_fer-",
        "test_output_shape_every_variant_and_size[local-",
        "test_output_shape_every_variant_and_size[local_mad-",
        "test_output_shape_every_variant_and_size[transfer-small]",
        "test_output_shape_every_variant_and_size[transfer-paper]",
        "test_paper_sizes_match_the_paper", "test_paper_forward_flops",
        "test_shapes_through_the_paper_model", "test_head_starts_at_zero",
        "test_eval_mode_is_deterministic", "test_train_mode_is_stochastic",
        "test_gradient_reaches_every_parameter", "test_attention_path_and_sdpa_path_agree",
        "test_returned_attention_is_the_one_the_output_used",
    ),
    "tests/models/test_dropping.py": (
        "test_msad_token_mode_is_the_authors_indexing", "test_msad_mode_reaches_every_block[token]",
    ),
    "tests/data/test_loaders.py": ("test_cli_subprocess_exit_code",),
    "tests/data/test_synth.py": (
        "test_synth_read_back_by_rafdb_loader", "test_synth_deterministic_for_a_seed",
        "test_ensure_synthetic_completes_a_set_written_before_val",
    ),
    "tests/data/test_fast.py": (
        "test_cache_contents", "test_eval_path_matches_per_image_within_one_grey_level[112]",
        "test_train_paths_have_the_same_output_statistics",
        "test_crop_and_flip_match_pil_within_one_grey_level[112]",
    ),
    "tests/data/test_paddle_randaugment.py": (
        "test_shear_direction_magnitude_and_grey_fill", "test_batched_ops_equal_the_per_image_ops",
        "test_erasing_as_the_authors_ran_it_touches_the_top_row_only",
    ),
    "tests/test_ablate_stats.py": ("test_t_quantile_agrees_with_scipy",),
    "tests/test_profiles.py": (),
    "tests/test_checkpoint.py": (
        "test_finite_weights_load", "test_nan_or_inf_weights_are_refused_at_load[_all_nan",
        "test_nan_or_inf_weights_are_refused_at_load[<lambda>-running_var]",
        "test_eval_predict_and_export_refuse_a_nan_checkpoint",
    ),
    "tests/test_cli.py": (),
    "tests/test_cli_sweep.py": (),
    "tests/test_cli_errors.py": (
        "test_decompression_bomb_in_train", "test_corrupt_image_in_training_workers",
        "test_corrupt_image_with_worker_processes_prints_the_message_only",
        "test_label_file_in_utf16_is_read", "test_label_superscript_two",
        "test_ferplus_malformed_rows[0,1 2 x,PrivateTest]", "test_full_disk",
        "test_read_only_folders", "test_predict_a_folder_reads_its_images",
        "test_refused_files_never_advise_weights_only_false", "test_own_checkpoint_given_as_ir50",
    ),
    "tests/test_weights.py": (),
    "tests/test_layout.py": (),
    "tests/test_pool.py": (),
    "tests/test_book_cache.py": (),
}


#: Markers that keep a test out of the fast tier wherever it is.
OTHER_TIERS = {"slow", "browser", "device_script"}


def _fast_only(config) -> bool:
    """``-m fast``: the other files need not even be collected (they import a lot)."""
    return (config.getoption("markexpr", "") or "").strip() == "fast"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fast: the fast tier, make test-fast (chosen in tests/conftest.py: FAST_FILES)")


def pytest_ignore_collect(collection_path, config):
    if not _fast_only(config) or collection_path.is_dir() or collection_path.suffix != ".py":
        return None
    try:
        rel = collection_path.resolve().relative_to(config.rootpath.resolve()).as_posix()
    except ValueError:
        return None
    if rel.startswith("tests/") and rel.rsplit("/", 1)[-1].startswith("test_"):
        return True if rel not in FAST_FILES else None
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel, _, name = item.nodeid.partition("::")
        slow = FAST_FILES.get(rel)
        marked = {m.name for m in item.iter_markers()}
        if slow is not None and not name.startswith(slow) and not marked & OTHER_TIERS:
            item.add_marker(pytest.mark.fast)
