"""Tests of study.serve.export: the artifact loads in a fresh process and ranks like the model."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import numpy as np
import pytest

from study.data import reserved_ids, vocabulary
from study.models import registry, sequence_transformer
from study.serve import export, serving_artifact

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_ITEMS = 20
RAW_ITEMS = tuple(f"b{index}" for index in range(NUM_ITEMS))


def tiny_model_config(attention="study", row_length=12):
    config = sequence_transformer.default_config()
    config.update(
        vocab_size=reserved_ids.NUM_RESERVED + NUM_ITEMS,
        row_length=row_length,
        num_layers=1,
        emb_dim=16,
        num_heads=2,
        mlp_dim=32,
        dropout_rate=0.0,
        attention=attention,
        use_grade=True,
    )
    return config


@functools.lru_cache(maxsize=None)
def _cached_init(attention, row_length, seed):
    config = tiny_model_config(attention, row_length)
    model = registry.build_model(config)
    init = jax.jit(lambda key: model.init(key, export.example_batch(row_length), train=False))
    return nn.unbox(init(jax.random.key(seed))["params"])


def init_params(config, seed=0):
    """Random-init parameters as plain arrays (as a restored checkpoint holds them)."""
    return _cached_init(config.attention, config.row_length, seed)


def make_artifact(directory, attention="study", *, row_length=12, top_k=8, batch_size=None, seed=0,
                  edit_params=None):
    """Exports a random-init tiny model; returns ``(model_config, params, artifact_dir)``."""
    config = tiny_model_config(attention, row_length)
    params = init_params(config, seed)
    if edit_params is not None:
        params = edit_params(params)
    os.makedirs(directory, exist_ok=True)
    vocab_path = os.path.join(directory, "vocab.json")
    vocabulary.save_vocab(vocabulary.Vocabulary(items=RAW_ITEMS), vocab_path)
    artifact_dir = os.path.join(directory, "artifact")
    export.export_model(
        config, params, vocab_path, artifact_dir, top_k=top_k, batch_size=batch_size
    )
    return config, params, artifact_dir


def reference_top_k(config, params, rows, top_k):
    """Top-k candidate ids and log-probabilities per position with the model in this process (NumPy sort)."""
    batch = {name: np.stack([row[name] for row in rows]) for name in export.SEQUENCE_INPUTS}
    batch["grade"] = np.asarray([row["grade"] for row in rows], np.int32)
    apply = jax.jit(lambda batch: registry.build_model(config).apply({"params": params}, batch, train=False))
    logits = np.asarray(apply(batch), np.float64)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    order = np.argsort(-log_probs[..., reserved_ids.FIRST_ITEM_ID :], axis=-1, kind="stable")[..., :top_k]
    ids = order + reserved_ids.FIRST_ITEM_ID
    return ids, np.take_along_axis(log_probs, ids, axis=-1)


REQUESTS = [
    {"history": [["b1", 1000], ["b2", 1100], ["unknown", 1200]],
     "classmates": {"c1": [["b5", 1050], ["b6", 1300]], "c2": [["b7", 900]]}, "grade": 3},
    {"history": [], "classmates": {"c1": [["b3", 500]]}},
    {"history": [["b%d" % (i % NUM_ITEMS), 100 * i] for i in range(15)]},
]

SUBPROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from study.serve import serving_artifact
    artifact_dir, requests_path, out_path = sys.argv[1:]
    recommender = serving_artifact.load_artifact(artifact_dir)
    requests = json.load(open(requests_path))
    rows, queries = [], []
    for request in requests:
        row, query = recommender.build_row(request["history"], request.get("classmates"), request.get("grade"))
        rows.append(row)
        queries.append(query)
    ids, scores = recommender.score_rows(rows)
    ranked = recommender.recommend_batch(requests, k=5)
    training_modules = sorted(name for name in sys.modules
                              if name.startswith(("study.models", "study.train", "flax", "optax", "orbax")))
    json.dump({"rows": [{k: v.tolist() for k, v in row.items()} for row in rows], "queries": queries,
               "ids": ids.tolist(), "scores": scores.tolist(), "ranked": ranked,
               "training_modules": training_modules}, open(out_path, "w"))
    """
)


@pytest.fixture(scope="module")
def study_artifact(tmp_path_factory):
    return make_artifact(str(tmp_path_factory.mktemp("study")), "study")


def test_fresh_process_top_k_equals_in_process_model(study_artifact, tmp_path):
    config, params, artifact_dir = study_artifact
    requests_path, out_path = tmp_path / "requests.json", tmp_path / "out.json"
    requests_path.write_text(json.dumps(REQUESTS))
    script = tmp_path / "serve.py"
    script.write_text(SUBPROCESS_SCRIPT)
    subprocess.run(
        [sys.executable, str(script), artifact_dir, str(requests_path), str(out_path)],
        check=True, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=120,
    )
    served = json.loads(out_path.read_text())
    assert served["training_modules"] == []  # the fresh process never loaded model/training code

    rows = [{name: np.asarray(values, np.int32) for name, values in row.items()} for row in served["rows"]]
    expected_ids, expected_scores = reference_top_k(config, params, rows, top_k=8)
    served_ids, served_scores = np.asarray(served["ids"]), np.asarray(served["scores"])
    query_ids = [served_ids[n, q] for n, q in enumerate(served["queries"])]
    expected_query_ids = [expected_ids[n, q] for n, q in enumerate(served["queries"])]
    np.testing.assert_array_equal(query_ids, expected_query_ids)
    np.testing.assert_array_equal(served_ids, expected_ids)
    np.testing.assert_allclose(served_scores, expected_scores, atol=1e-4)
    for n, ranked in enumerate(served["ranked"]):
        query = served["queries"][n]
        assert [item for item, _ in ranked] == [RAW_ITEMS[i - 3] for i in expected_ids[n, query, :5]]
        np.testing.assert_allclose([score for _, score in ranked], expected_scores[n, query, :5], atol=1e-4)


def test_reserved_ids_are_never_ranked(tmp_path):
    def favour_reserved(params):
        # A huge output bias on PAD / OOV / SEP makes them the model's top three everywhere.
        bias = np.asarray(params["output"]["bias"]).copy()
        bias[: reserved_ids.FIRST_ITEM_ID] = 1e3
        return {**params, "output": {**params["output"], "bias": bias}}

    config, params, artifact_dir = make_artifact(str(tmp_path), "individual", edit_params=favour_reserved)
    recommender = serving_artifact.load_artifact(artifact_dir)
    row, _ = recommender.build_row([("b1", 10), ("b2", 20)])
    ids, scores = recommender.score_rows([row])
    assert ids.min() >= reserved_ids.FIRST_ITEM_ID
    assert ids.shape == (1, 12, 8)
    # Scores stay log-probabilities over the full vocabulary: the reserved ids take nearly all the mass.
    assert scores.max() < -500


def test_fixed_batch_size_artifact_serves_any_number_of_requests(tmp_path):
    config, params, artifact_dir = make_artifact(str(tmp_path), "study", batch_size=2, top_k=4)
    recommender = serving_artifact.load_artifact(artifact_dir)
    manifest = json.loads(open(os.path.join(artifact_dir, "manifest.json")).read())
    assert manifest["inputs"]["item_ids"]["shape"] == [2, 12]
    ranked = recommender.recommend_batch(REQUESTS, k=4)  # 3 requests -> two batches of 2
    assert len(ranked) == 3
    rows = [recommender.build_row(r["history"], r.get("classmates"), r.get("grade")) for r in REQUESTS]
    expected_ids, _ = reference_top_k(config, params, [row for row, _ in rows], top_k=4)
    for n, (_, query) in enumerate(rows):
        assert [item for item, _ in ranked[n]] == [RAW_ITEMS[i - 3] for i in expected_ids[n, query]]


def test_manifest_and_files(study_artifact):
    config, _, artifact_dir = study_artifact
    assert sorted(os.listdir(artifact_dir)) == sorted(
        ["manifest.json", "model.jax_exported", "model_config.json", "model_query.jax_exported", "reserved_ids.json",
         "vocab.json"]
    )
    manifest = json.loads(open(os.path.join(artifact_dir, "manifest.json")).read())
    assert manifest["format"] == "study-serving" and manifest["format_version"] == 1
    assert manifest["jax_version"] == jax.__version__
    assert manifest["inputs"]["timestamps"] == {"shape": ["batch", 12], "dtype": "int32"}
    assert manifest["inputs"]["grade"] == {"shape": ["batch"], "dtype": "int32"}
    assert manifest["outputs"]["top_ids"] == {"shape": ["batch", 12, 8], "dtype": "int32"}
    assert manifest["top_k"] == 8 and manifest["attention"] == "study"
    reserved = json.loads(open(os.path.join(artifact_dir, "reserved_ids.json")).read())
    assert reserved == {"pad": 0, "oov": 1, "sep": 2, "first_item_id": 3}
    saved_config = json.loads(open(os.path.join(artifact_dir, "model_config.json")).read())
    assert saved_config["emb_dim"] == config.emb_dim and saved_config["attention"] == "study"
    assert json.loads(open(os.path.join(artifact_dir, "vocab.json")).read())["items"] == list(RAW_ITEMS)


def test_top_k_is_clipped_to_the_number_of_candidates(tmp_path):
    _, _, artifact_dir = make_artifact(str(tmp_path), "individual", top_k=1000)
    assert serving_artifact.load_artifact(artifact_dir).top_k == NUM_ITEMS


def test_vocabulary_that_does_not_match_the_model_is_rejected(tmp_path):
    config = tiny_model_config()
    params = init_params(config)
    vocab_path = str(tmp_path / "vocab.json")
    vocabulary.save_vocab(vocabulary.Vocabulary(items=RAW_ITEMS[:5]), vocab_path)
    with pytest.raises(ValueError, match="vocab_size=23"):
        export.export_model(config, params, vocab_path, str(tmp_path / "artifact"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export.export_model(config, params, str(tmp_path / "missing.json"), str(tmp_path / "artifact"))


def test_loading_an_incomplete_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a complete serving artifact"):
        serving_artifact.load_artifact(str(tmp_path))


def test_export_run_exports_the_checkpoint_a_short_training_run_wrote(tmp_path):
    """`study export` (export_run) end to end in the default run: a 2-step `study train` run of a tiny model on a
    tiny dataset writes a checkpoint; the artifact exported from it ranks like the restored parameters."""
    from study.commands import export as export_command, train as train_command
    from study.tasks import build_task
    from study.train import loop
    from tests.test_input_pipeline import write_dataset
    from tests.test_trainer import tiny_config

    data_dir, run_dir = tmp_path / "data", str(tmp_path / "run")
    write_dataset(data_dir, rows_per_split={"train": 16, "validation": 8}, num_shards=1,
                  vocab_size=reserved_ids.NUM_RESERVED + NUM_ITEMS)
    vocab_path = str(tmp_path / "vocab.json")  # the raw item ids of the dataset's 20 items
    vocabulary.save_vocab(vocabulary.Vocabulary(items=RAW_ITEMS), vocab_path)
    config = tiny_config(data_dir)
    config.update(steps=2, checkpoint_every=2, batch_size=4, log_every=1)
    train_command.train(config, run_dir)
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["2"]

    out_dir = str(tmp_path / "artifact")
    export_command.export_run(config, run_dir, out_dir, vocab_path=vocab_path, top_k=5)
    recommender = serving_artifact.load_artifact(out_dir)
    assert recommender.top_k == 5 and recommender.attention == "study"
    task = build_task(config)
    state = loop.restore_state(task, task.config, run_dir)
    assert int(state.step) == 2
    rows = [recommender.build_row([("b1", 10), ("b2", 20)], {"c": [("b7", 15)]}, grade=2)[0],
            recommender.build_row([], {"c": [("b3", 5)]})[0]]
    ids, scores = recommender.score_rows(rows)
    expected_ids, expected_scores = reference_top_k(task.config.model, jax.device_get(state.params), rows, top_k=5)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-4)


@pytest.mark.slow  # builds and checkpoints the smoke preset's train state (about a minute on 2 CPU cores)
def test_export_run_restores_the_latest_checkpoint(tmp_path):
    """`study export` (export_run): a checkpoint saved like the trainer's becomes an artifact ranking like its params."""
    import flax.linen as nn

    from configs import study as study_config
    from study.commands import export as export_command
    from study.tasks import build_task
    from study.train import checkpointing, gradient_step, schedules

    config = study_config.get_config("smoke")
    config.data_dir = str(tmp_path / "data")
    os.makedirs(config.data_dir)
    vocabulary.save_vocab(vocabulary.Vocabulary(items=RAW_ITEMS), os.path.join(config.data_dir, "vocab.json"))
    task = build_task(config)  # vocab_size 0: read from the vocabulary, as training does
    keys = jax.random.split(jax.random.key(3))
    state = jax.jit(lambda: nn.unbox(gradient_step.init_state(task, schedules.make_optimizer(config), *keys)))()
    ckpt = checkpointing.Checkpointer(str(tmp_path / "run" / "checkpoints"), every_steps=1, async_save=False)
    ckpt.save(7, state, {"step": 7, "batches_consumed": 7, "seed": 3}, force=True)
    ckpt.close()

    out_dir = str(tmp_path / "artifact")
    export_command.export_run(config, str(tmp_path / "run"), out_dir, vocab_path=f"{config.data_dir}/vocab.json",
                              top_k=5)
    recommender = serving_artifact.load_artifact(out_dir)
    row, query = recommender.build_row([("b1", 10), ("b2", 20)])
    ids, _ = recommender.score_rows([row])
    expected_ids, _ = reference_top_k(task.config.model, state.params, [row], top_k=5)
    np.testing.assert_array_equal(ids[0, query], expected_ids[0, query])
