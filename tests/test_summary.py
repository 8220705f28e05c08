from transfer_lib.cli import main


def test_summary_command_prints_sizes_and_runs_a_forward_pass(capsys):
    assert main(["summary", "--size", "tiny", "--variant", "local_mad"]) == 0
    out = capsys.readouterr().out
    assert "variant=local_mad" in out
    assert "local_cnn" in out and "transformer" in out
    assert "-> logits (2, 7)" in out


def test_summary_rejects_an_unknown_variant(capsys):
    import pytest

    with pytest.raises(SystemExit) as err:
        main(["summary", "--variant", "vit"])
    assert err.value.code == 2
    assert "invalid choice: 'vit'" in capsys.readouterr().err
