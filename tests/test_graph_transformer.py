"""The graph transformer convolution against a dense NumPy reference of equation 5, and the recommender."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from study.models import graph_transformer as gt
from study.sims import course_corpora as cc

CORPORA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "gnn_rl_corpora", "corpora",
                       "extracted_data")


def small_course(num_docs=3, num_keywords=4, features=6, seed=0):
    """3 documents, 4 keywords; doc 0 - kw {0, 1}, doc 1 - kw {1, 2, 3}, doc 2 - kw {3}; keyword 3 also
    links doc 2 only once; one extra isolated keyword would get no message."""
    rng = np.random.default_rng(seed)
    edge_doc = np.array([0, 0, 1, 1, 1, 2], np.int32)
    edge_keyword = np.array([0, 1, 1, 2, 3, 3], np.int32)
    return {"keyword_features": rng.normal(size=(num_keywords + 1, features)).astype(np.float32),
            "doc_mask": np.ones(num_docs, bool), "edge_doc": edge_doc, "edge_keyword": edge_keyword}


def dense(params, x):
    return x @ np.asarray(params["kernel"]) + np.asarray(params["bias"])


def reference_conv(params, source, target, adjacency, heads):
    """Equation 5 with a dense [targets, sources] adjacency, a loop over targets and heads."""
    q, k, v, root = (dense(params[name], x) for name, x in
                     (("query", target), ("key", source), ("value", source), ("root", target)))
    d = q.shape[1] // heads
    out = root.copy()
    for i in range(target.shape[0]):
        neighbours = np.flatnonzero(adjacency[i])
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            if len(neighbours) == 0:
                continue
            scores = np.array([q[i, cols] @ k[j, cols] / np.sqrt(d) for j in neighbours])
            alpha = np.exp(scores - scores.max())
            alpha /= alpha.sum()
            out[i, cols] += sum(a * v[j, cols] for a, j in zip(alpha, neighbours))
    return out


@pytest.mark.parametrize("direction", gt.DIRECTIONS)
def test_convolution_matches_dense_equation_5(direction):
    course = small_course()
    graph = gt.course_graph(course)
    docs, keywords = np.asarray(graph.nodes["doc"]), np.asarray(graph.nodes["keyword"])
    adjacency = np.zeros((3, 5), bool)  # [doc, keyword]
    adjacency[course["edge_doc"], course["edge_keyword"]] = True
    source, target, adj = ((docs, keywords, adjacency.T) if direction == "doc_to_keyword"
                           else (keywords, docs, adjacency))
    conv = gt.GraphTransformerConv(features=8, heads=4)
    params = conv.init(jax.random.key(0), graph, source, target, direction)["params"]
    got = np.asarray(conv.apply({"params": params}, graph, source, target, direction))
    np.testing.assert_allclose(got, reference_conv(params, source, target, adj, 4), rtol=1e-5, atol=1e-5)
    if direction == "doc_to_keyword":  # keyword 4 has no document: only W1 h_i
        np.testing.assert_allclose(got[4], dense(params["root"], keywords[4:5])[0], rtol=1e-5, atol=1e-6)


def test_document_features_are_keyword_means():
    course = small_course()
    graph = gt.course_graph(course)
    kw = course["keyword_features"]
    np.testing.assert_allclose(np.asarray(graph.nodes["doc"][1]), kw[[1, 2, 3]].mean(0), rtol=1e-6)


@pytest.mark.skipif(not os.path.isdir(CORPORA), reason="shared GNN-RL corpora not present")
def test_same_parameters_for_any_course_and_equivariant_scores():
    courses = [cc.load_course(os.path.join(CORPORA, name)) for name in (cc.INTRO_TO_ML, cc.SEQUENTIAL_CORPORA[1])]
    arrays = [cc.padded(c, cc.common_dims([c])) for c in courses]
    model = gt.GraphRecommender()
    graphs = [gt.course_graph(a) for a in arrays]
    feedback = [np.full(a["doc_mask"].shape, 3, np.int32) for a in arrays]
    params = [model.init(jax.random.key(0), g, f)["params"] for g, f in zip(graphs, feedback)]
    assert jax.tree.structure(params[0]) == jax.tree.structure(params[1])
    assert gt.num_params(params[0]) == gt.num_params(params[1])
    # 100-d inputs, hidden 128, 4 heads: two input layers, three convolutions of four 128x128 maps, the
    # feedback MLP (4 -> 128 -> 128) and the score layer.
    expected = 2 * (100 * 128 + 128) + 3 * 4 * (128 * 128 + 128) + (4 * 128 + 128) + (128 * 128 + 128) + 129
    assert gt.num_params(params[0]) == expected
    # Relabelling the documents relabels the scores.
    a = arrays[1]
    d = int(a["doc_mask"].sum())
    perm = np.random.default_rng(0).permutation(d)
    inverse = np.argsort(perm)
    permuted = dict(a, edge_doc=np.where(a["edge_doc"] < d, inverse[np.minimum(a["edge_doc"], d - 1)], a["edge_doc"]))
    fb = np.random.default_rng(1).integers(0, 4, a["doc_mask"].shape).astype(np.int32)
    fb_perm = fb.copy()
    fb_perm[:d] = fb[perm]
    scores = np.asarray(model.apply({"params": params[1]}, gt.course_graph(a), fb))
    scores_perm = np.asarray(model.apply({"params": params[1]}, gt.course_graph(permuted), fb_perm))
    np.testing.assert_allclose(scores_perm[:d], scores[:d][perm], rtol=1e-4, atol=1e-5)
    # The student's feedback changes the scores (the Hadamard product carries it).
    other = np.asarray(model.apply({"params": params[1]}, gt.course_graph(a), np.zeros_like(fb)))
    assert np.abs(other[:d] - scores[:d]).max() > 1e-4
