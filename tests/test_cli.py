"""`study CMD --help` prints the command's flags and exits 0, for every command; a representative input error of
every command is ONE `error: ...` line naming the flag / file / field, exit 2, and no output is left behind."""

import json
import os
import subprocess
import sys

import pytest

from study import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Flags each command's --help must list.
HELP_FLAGS = {
    "generate": ["--num_students", "--out_dir", "--file_format"],
    "preprocess": ["--interactions", "--roster", "--output_dir", "--split_date"],
    "train": ["--config", "--workdir", "--config.<field>"],
    "eval": ["--config", "--workdir", "--split", "--evaluators", "--num_bootstrap"],
    "compare": ["--metrics", "--output_dir"],
    "suite": ["--data_dir", "--workdir", "--models", "--override"],
    "export": ["--config", "--workdir", "--output_dir", "--top_k", "--vocab", "--saved_model"],
    "recommend": ["--artifact", "--requests", "--output", "--k", "--batch_size"],
    "serve": ["--artifact", "--port", "--max_batch_size", "--max_wait_ms", "--max_body_bytes"],
    "homework": ["--config", "--workdir", "--students", "--top_k", "--target", "--weights", "--factors"],
    "bandits": ["--workdir", "--preset", "--datasets", "--policies", "--topics", "--override"],
    "kt": ["--workdir", "--datasets", "--models", "--folds", "--statics_folds", "--epochs", "--synthetic_epochs",
           "--override"],
    "gnn_rl": ["--workdir", "--pretrained", "--seeds", "--scenarios", "--methods", "--override"],
}


def study(*args, timeout=120):
    """Runs ``study ARGS`` (``python -m study.cli``) in a subprocess."""
    return subprocess.run([sys.executable, "-m", "study.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"), timeout=timeout)


def error_line(result) -> str:
    """The one ``error:`` line of a failed command (exit 2, no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_every_command_has_a_help_test():
    assert sorted(HELP_FLAGS) == sorted(cli.COMMANDS)


@pytest.mark.parametrize("command", sorted(HELP_FLAGS))
def test_help_lists_the_flags_and_exits_0(command):
    result = study(command, "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    for flag in HELP_FLAGS[command]:
        assert flag in result.stdout, (flag, result.stdout)
    assert "DESIGN.md" not in result.stdout
    assert "Traceback" not in result.stderr


@pytest.fixture
def data_dir(tmp_path):
    """A folder shaped like `study preprocess` output, as far as the commands check before loading anything."""
    data = tmp_path / "data"
    for dataset in ("study", "individual"):
        (data / dataset).mkdir(parents=True)
    (data / "vocab.json").write_text(json.dumps({"items": [f"b{i}" for i in range(20)]}))
    return data


@pytest.fixture
def run_dir(tmp_path):
    """A run folder with a checkpoint of step 7 (only its presence is checked before the error)."""
    run = tmp_path / "run"
    (run / "checkpoints" / "7").mkdir(parents=True)
    return run


def test_generate_unknown_format(tmp_path):
    line = error_line(study("generate", "--num_students=10", f"--out_dir={tmp_path}/raw", "--formats=canonical,csv"))
    assert "--formats=canonical,csv" in line and "official" in line
    assert not (tmp_path / "raw").exists()


def test_generate_flag_out_of_range(tmp_path):
    line = error_line(study("generate", "--num_students=0", f"--out_dir={tmp_path}/raw"))
    assert "--num_students" in line
    assert not (tmp_path / "raw").exists()


def test_preprocess_missing_required_flag(tmp_path):
    line = error_line(study("preprocess", f"--interactions={tmp_path}/i.csv", f"--output_dir={tmp_path}/out"))
    assert "--roster" in line
    assert not (tmp_path / "out").exists()


def test_train_unknown_config_field(tmp_path, data_dir):
    line = error_line(study("train", "--config=configs/study.py:smoke", f"--workdir={tmp_path}/run",
                            f"--config.data_dir={data_dir}", "--config.modle.emb_dim=3"))
    assert "--config.modle.emb_dim" in line and "configs/study.py:smoke" in line
    assert "has no field 'modle' (did you mean 'model'?)" in line
    assert not (tmp_path / "run").exists()


def test_train_missing_data_dir(tmp_path):
    line = error_line(study("train", "--config=configs/study.py:smoke", f"--workdir={tmp_path}/run",
                            f"--config.data_dir={tmp_path}/nowhere"))
    assert f"--config.data_dir={tmp_path}/nowhere: no such directory" in line
    assert not (tmp_path / "run").exists()


def test_train_config_value_of_the_wrong_type(tmp_path, data_dir):
    line = error_line(study("train", "--config=configs/study.py:smoke", f"--workdir={tmp_path}/run",
                            f"--config.data_dir={data_dir}", "--config.model.emb_dim=wide"))
    assert "config.model.emb_dim" in line and "wide" in line
    assert not (tmp_path / "run").exists()


def test_eval_without_a_checkpoint(tmp_path, data_dir):
    run = tmp_path / "run"
    run.mkdir()
    line = error_line(study("eval", "--config=configs/study.py:smoke", f"--workdir={run}",
                            f"--config.data_dir={data_dir}"))
    assert f"--workdir={run}: no checkpoint in {run}/checkpoints" in line
    assert os.listdir(run) == []


def test_eval_unknown_split(run_dir, data_dir):
    line = error_line(study("eval", "--config=configs/study.py:smoke", f"--workdir={run_dir}",
                            f"--config.data_dir={data_dir}", "--split=tset"))
    assert "--split=tset" in line and "validation" in line
    assert os.listdir(run_dir) == ["checkpoints"]


def test_compare_metrics_file_that_is_not_json(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text('{"ns": [1, 5], ')
    line = error_line(study("compare", f"--metrics=study={bad}", f"--output_dir={tmp_path}/compare"))
    assert f"--metrics study={bad}: not valid JSON" in line
    assert not (tmp_path / "compare").exists()


def test_compare_metrics_file_without_its_fields(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text('{"ns": [1, 5]}')
    line = error_line(study("compare", f"--metrics=study={bad}", f"--output_dir={tmp_path}/compare"))
    assert "lacks field(s) ['counts', 'overall', 'breakdowns']" in line and str(bad) in line
    assert not (tmp_path / "compare").exists()


def test_suite_unknown_model(tmp_path, data_dir):
    line = error_line(study("suite", f"--data_dir={data_dir}", f"--workdir={tmp_path}/suite",
                            "--models=study,transfomer", "--preset=smoke"))
    assert "unknown model 'transfomer'" in line and "configs/transfomer.py" in line
    assert not (tmp_path / "suite").exists()


def test_gnn_rl_without_a_pretrained_run_names_the_flag(tmp_path):
    line = error_line(study("gnn_rl", f"--workdir={tmp_path / 'compare'}", f"--pretrained={tmp_path / 'none'}"))
    assert "--pretrained=" in line and "pre-train first" in line
    assert not os.path.exists(tmp_path / "compare")
    line = error_line(study("gnn_rl", f"--workdir={tmp_path / 'compare'}", "--methods=pretrained,dqn"))
    assert "--methods" in line and "dqn" in line


def test_suite_bad_override(tmp_path, data_dir):
    line = error_line(study("suite", f"--data_dir={data_dir}", f"--workdir={tmp_path}/suite", "--override=steps"))
    assert "--override entry 'steps' is not KEY=VALUE" in line
    assert not (tmp_path / "suite").exists()


def test_export_without_data_dir_names_the_flag(tmp_path, run_dir):
    # The README's example once left out --config.data_dir, so vocab.json was not found (a traceback).
    line = error_line(study("export", "--config=configs/study.py:smoke", f"--workdir={run_dir}",
                            f"--output_dir={tmp_path}/artifact"))
    assert "--config.data_dir is not set" in line and "vocab.json" in line
    assert not (tmp_path / "artifact").exists()


@pytest.mark.parametrize("top_k", ["0", "21"])
def test_export_top_k_out_of_range_is_an_error_not_a_clamp(tmp_path, run_dir, data_dir, top_k):
    line = error_line(study("export", "--config=configs/study.py:smoke", f"--workdir={run_dir}",
                            f"--config.data_dir={data_dir}", f"--output_dir={tmp_path}/artifact", f"--top_k={top_k}"))
    assert f"--top_k={top_k} is out of range" in line and "1..20" in line
    assert not (tmp_path / "artifact").exists()


def test_export_default_top_k_matches_the_serving_module():
    from study.commands import export as export_command
    from study.serve import export as export_lib

    assert export_command.DEFAULT_TOP_K == export_lib.DEFAULT_TOP_K


@pytest.fixture
def fake_artifact(tmp_path):
    """An artifact folder with only a manifest: enough for the checks made before the model is loaded."""
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "manifest.json").write_text(json.dumps({"format": "study-serving", "top_k": 8}))
    return artifact


@pytest.mark.parametrize("k", ["0", "9"])
def test_recommend_k_out_of_range_is_an_error_not_a_clamp(tmp_path, fake_artifact, k):
    requests = tmp_path / "requests.json"
    requests.write_text("[]")
    line = error_line(study("recommend", f"--artifact={fake_artifact}", f"--requests={requests}",
                            f"--output={tmp_path}/responses.json", f"--k={k}"))
    assert f"--k={k} is out of range" in line and "1..8" in line
    assert not (tmp_path / "responses.json").exists()


def test_recommend_missing_artifact(tmp_path):
    requests = tmp_path / "requests.json"
    requests.write_text("[]")
    line = error_line(study("recommend", f"--artifact={tmp_path}/nothing", f"--requests={requests}"))
    assert f"--artifact={tmp_path}/nothing: no such folder" in line


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory):
    from tests.test_export import make_artifact

    return make_artifact(str(tmp_path_factory.mktemp("artifact")), "study", top_k=8)[2]


@pytest.mark.parametrize("text, message", [
    ('[{"history": []},\n {"history": [["b1", 10]], "grade": "fifth"}]',
     r"requests.json: request 1 (line 2): grade must be an integer"),
    ('[{"history": []},\n {"history": [["b1", 10]], "histroy": []}]',
     r"requests.json: request 1 (line 2) has unknown fields ['histroy']"),
    ('[{"history": []},\n {"history": [["b1", 10]]}', r"requests.json is not valid JSON: line 2"),
])
def test_recommend_bad_request_names_file_line_and_field(tmp_path, artifact_dir, text, message):
    requests = tmp_path / "requests.json"
    requests.write_text(text)
    line = error_line(study("recommend", f"--artifact={artifact_dir}", f"--requests={requests}",
                            f"--output={tmp_path}/responses.json", "--k=3"))
    assert message in line
    assert sorted(os.listdir(tmp_path)) == ["requests.json"]  # no output, no temporary file


def test_recommend_writes_valid_json_to_a_file_and_to_stdout(tmp_path, artifact_dir):
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps({"requests": [{"id": "a", "history": [["b1", 10]]}, {"history": []}]}))
    result = study("recommend", f"--artifact={artifact_dir}", f"--requests={requests}", "--k=3", "--batch_size=1")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout)
    result = study("recommend", f"--artifact={artifact_dir}", f"--requests={requests}", "--k=3",
                   f"--output={tmp_path}/responses.json")
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((tmp_path / "responses.json").read_text())
    assert written == printed
    assert [response["id"] for response in written["responses"]] == ["a", 1]
    assert all(len(response["recommendations"]) == 3 for response in written["responses"])
