"""Flags of the dataset job: a flag that is neither the job's nor a Beam pipeline option is an error."""

from tests.pipeline_inputs import error_lines
from tests.pipeline_inputs import run_command


def test_misspelled_flag_is_an_error_naming_it(tmp_path):
    result = run_command(
        f"--interactions={tmp_path}/i.csv",
        f"--roster={tmp_path}/r.csv",
        f"--output_dir={tmp_path}/out",
        "--vocab_sise=10",
    )
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result)
    assert "--vocab_sise" in line and "--vocab_size" in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_beam_options_and_absl_flags_are_still_accepted(tmp_path):
    # Beam options and absl's own flags pass; the job then stops at the missing input (exit 1).
    result = run_command(
        f"--interactions={tmp_path}/missing.csv",
        f"--roster={tmp_path}/r.csv",
        f"--output_dir={tmp_path}/out",
        "--runner=DirectRunner",
        "--direct_num_workers=1",
        "--project",
        "my-project",
        "--verbosity=-1",
    )
    assert result.returncode == 1, result.stderr
    (line,) = error_lines(result)
    assert "no file matches" in line
