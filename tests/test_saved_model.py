"""The SavedModel of ``study export``: a process with TensorFlow only (``jax``, ``jaxlib``, ``flax`` and ``study``
refuse to import) loads it and returns the same top-k as ``study recommend`` on 200 generated requests."""

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
from study.models import registry
from study.serve import export, recommend, serving_artifact
from tests.test_export import NUM_ITEMS, RAW_ITEMS, init_params, tiny_model_config

NUM_REQUESTS = 200
K = 5

TF_ONLY_SCRIPT = textwrap.dedent(
    """
    import sys

    BLOCKED = {"jax", "jaxlib", "flax", "study"}

    class RefuseImports:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"{name} may not be imported in a TensorFlow-only process")
            return None

    sys.meta_path.insert(0, RefuseImports())
    sys.path = [entry for entry in sys.path if entry not in ("", ".")]

    import json
    import numpy as np
    import tensorflow as tf

    saved_model_dir, rows_path, k, out_path = sys.argv[1:]
    model = tf.saved_model.load(saved_model_dir)
    inputs = {name: tf.constant(values) for name, values in np.load(rows_path).items()}
    outputs = model.signatures["serving_default"](**inputs, k=tf.constant(int(k)))
    raw = tf.constant([["b0", "b19", "not-an-item"]])
    lookup = model.signatures["item_ids"](raw_items=raw)["item_ids"].numpy()
    loaded = sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED)
    json.dump({"top_items": [[item.decode() for item in row] for row in outputs["top_items"].numpy()],
               "top_ids": outputs["top_ids"].numpy().tolist(), "top_scores": outputs["top_scores"].numpy().tolist(),
               "lookup": lookup.tolist(), "blocked_modules_loaded": loaded}, open(out_path, "w"))
    """
)


def generated_requests(count, seed=0):
    """STUDY requests of varied shape: histories of 0..20 events (some unknown items), 0..4 classmates, grades."""
    rng = np.random.default_rng(seed)
    requests = []
    for number in range(count):
        def events(size, start):
            items = [f"b{item}" if item < NUM_ITEMS else f"new{item}" for item in rng.integers(0, NUM_ITEMS + 3, size)]
            times = np.sort(rng.integers(start, start + 50_000, size))
            return [[item, int(time)] for item, time in zip(items, times)]

        request = {"id": f"s{number}", "history": events(int(rng.integers(0, 21)), 1_600_000_000),
                   "classmates": {f"c{c}": events(int(rng.integers(1, 8)), 1_599_990_000)
                                  for c in range(int(rng.integers(0, 5)))},
                   "grade": int(rng.integers(0, 13))}
        if number % 3 == 0 and request["history"]:
            request["query_time"] = request["history"][-1][1] + int(rng.integers(0, 5000))
        requests.append(request)
    return requests


def model_rows(recommender, requests):
    """The rows (``study.serve.serving_artifact.Recommender.build_row``) of ``requests`` as signature inputs."""
    built = [recommender.build_row(r["history"], r.get("classmates"), r.get("grade"), query_time=r.get("query_time"))
             for r in requests]
    inputs = {name: np.stack([row[name] for row, _ in built]) for name in export.SEQUENCE_INPUTS}
    inputs["grade"] = np.asarray([row["grade"] for row, _ in built], np.int32)
    inputs["query_index"] = np.asarray([query for _, query in built], np.int32)
    return inputs


def run_tf_only(tmp_path, saved_model_dir, inputs, k):
    rows_path, out_path, script = tmp_path / "rows.npz", tmp_path / "tf_out.json", tmp_path / "tf_only.py"
    np.savez(rows_path, **inputs)
    script.write_text(TF_ONLY_SCRIPT)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    subprocess.run([sys.executable, str(script), saved_model_dir, str(rows_path), str(k), str(out_path)],
                   check=True, cwd=str(tmp_path), env=env, timeout=300)
    return json.loads(out_path.read_text())


def export_with_saved_model(directory, model_config, params, top_k=8):
    vocab_path = os.path.join(directory, "vocab.json")
    vocabulary.save_vocab(vocabulary.Vocabulary(items=RAW_ITEMS), vocab_path)
    artifact_dir = os.path.join(directory, "artifact")
    export.export_model(model_config, params, vocab_path, artifact_dir, top_k=top_k, saved_model=True)
    return artifact_dir


@pytest.fixture(scope="module")
def study_saved_model(tmp_path_factory):
    config = tiny_model_config("study")
    return export_with_saved_model(str(tmp_path_factory.mktemp("export")), config, init_params(config))


def test_tensorflow_only_process_returns_the_top_k_of_study_recommend(tmp_path, study_saved_model):
    artifact_dir = study_saved_model
    requests = generated_requests(NUM_REQUESTS)
    requests_path, responses_path = tmp_path / "requests.json", tmp_path / "responses.json"
    requests_path.write_text(json.dumps(requests))
    recommend.recommend_from_file(artifact_dir, str(requests_path), K, str(responses_path))
    responses = json.loads(responses_path.read_text())["responses"]

    recommender = serving_artifact.load_artifact(artifact_dir)
    served = run_tf_only(tmp_path, os.path.join(artifact_dir, "saved_model"), model_rows(recommender, requests), K)
    assert served["blocked_modules_loaded"] == []
    assert served["lookup"] == [[reserved_ids.FIRST_ITEM_ID, reserved_ids.FIRST_ITEM_ID + 19, reserved_ids.OOV]]
    assert len(served["top_items"]) == NUM_REQUESTS
    for number, response in enumerate(responses):
        expected_items = [entry["item_id"] for entry in response["recommendations"]]
        expected_scores = [entry["score"] for entry in response["recommendations"]]
        assert served["top_items"][number] == expected_items, f"request {number}"
        assert served["top_ids"][number] == [RAW_ITEMS.index(item) + 3 for item in expected_items]
        np.testing.assert_allclose(served["top_scores"][number], expected_scores, rtol=1e-5,
                                   err_msg=f"request {number}")


def test_k_outside_the_exported_top_k_is_refused(study_saved_model):
    import tensorflow as tf

    recommender = serving_artifact.load_artifact(study_saved_model)
    inputs = model_rows(recommender, [{"history": [["b1", 5], ["b2", 9]]}])
    serve = tf.saved_model.load(os.path.join(study_saved_model, "saved_model")).signatures["serving_default"]
    assert serve(**inputs, k=tf.constant(8))["top_ids"].shape == (1, 8)
    for k in (0, 9):
        with pytest.raises(tf.errors.InvalidArgumentError, match="k must be in 1..8"):
            serve(**inputs, k=tf.constant(k))


def family_config(name):
    """A tiny model config of each servable family (the smoke presets, shrunk)."""
    from configs import samn, srgnn

    if name in ("study", "individual", "study_two_stream"):
        return tiny_model_config(name, row_length=12)
    config = {"samn": samn, "srgnn": srgnn}[name].model_config("smoke")
    config.update(vocab_size=reserved_ids.NUM_RESERVED + NUM_ITEMS, row_length=12)
    return config


@pytest.mark.slow  # one export and one TensorFlow process per family (about 40 s each on 2 busy CPU cores)
@pytest.mark.parametrize("family", ["individual", "study_two_stream", "samn", "srgnn"])
def test_every_servable_family_exports_a_saved_model_that_ranks_like_jax(tmp_path, family):
    config = family_config(family)
    model = registry.build_model(config)
    params = jax.jit(lambda key: model.init(key, export.example_batch(12, 2), train=False))(jax.random.key(1))
    params = jax.tree.map(np.asarray, nn.unbox(params["params"]))
    artifact_dir = export_with_saved_model(str(tmp_path), config, params)
    requests = generated_requests(40, seed=2)
    recommender = serving_artifact.load_artifact(artifact_dir)
    if not recommender.num_grades:  # SAMN and SR-GNN read no grade
        requests = [dict(request, grade=0) for request in requests]
    expected = recommender.recommend_batch(requests, k=K)
    served = run_tf_only(tmp_path, os.path.join(artifact_dir, "saved_model"), model_rows(recommender, requests), K)
    assert served["top_items"] == [[item for item, _ in ranked] for ranked in expected]
    np.testing.assert_allclose(served["top_scores"], [[score for _, score in ranked] for ranked in expected],
                               rtol=1e-5)
