"""The GNN-RL recommender (Vassoyan et al. 2024): graph transformer convolutions on the bipartite graph of a
course's documents and keywords, scoring every document for one student (jraph + Flax).

Graph: one ``jraph.GraphsTuple`` per course with ``nodes = {"doc": [D, F], "keyword": [K, F]}``, one edge
per (document, keyword) mention, ``senders`` = document index, ``receivers`` = keyword index. Messages flow
either way (``direction`` "doc_to_keyword" or "keyword_to_doc").

Convolution (the paper's equation 5, multi-head dot-product attention, heads concatenated)::

    h_i' = W1 h_i + sum_{j in N(i)} alpha_ij W2 h_j,   alpha_ij = softmax_j((W3 h_i) . (W4 h_j) / sqrt(d_head))

per head. Recommender (appendix B): keyword features are the 100-d embeddings, a document's features the
mean of its keywords'; both go through a linear layer and ELU; the encoder ``phi`` is a keyword -> document
convolution; the document embeddings are multiplied (Hadamard product) by an MLP embedding of the student's
last feedback on each document; the policy ``psi`` is a document -> keyword then a keyword -> document
convolution; a final linear layer gives one score per document (softmax over documents = the policy).
Every layer acts per node or per edge, so the parameter count does not depend on the course.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from study.sims.document_students import NUM_FEEDBACKS

DIRECTIONS = ("doc_to_keyword", "keyword_to_doc")


def course_graph(course: dict) -> jraph.GraphsTuple:
    """The bipartite graph of a padded course (``study.sims.course_corpora.padded``): keyword nodes carry
    the embeddings, document nodes the mean embedding of their keywords."""
    keywords = jnp.asarray(course["keyword_features"])
    num_docs = course["doc_mask"].shape[0]
    edge_doc, edge_keyword = jnp.asarray(course["edge_doc"]), jnp.asarray(course["edge_keyword"])
    total = jax.ops.segment_sum(keywords[edge_keyword], edge_doc, num_docs)
    count = jax.ops.segment_sum(jnp.ones_like(edge_doc, jnp.float32), edge_doc, num_docs)
    docs = total / jnp.maximum(count, 1.0)[:, None]
    return jraph.GraphsTuple(nodes={"doc": docs, "keyword": keywords}, edges=None, senders=edge_doc,
                             receivers=edge_keyword, n_node=jnp.array([num_docs + keywords.shape[0]]),
                             n_edge=jnp.array([edge_doc.shape[0]]), globals=None)


class GraphTransformerConv(nn.Module):
    """Equation 5 on a bipartite graph: ``__call__(graph, source [Ns, F], target [Nt, F'], direction)
    -> [Nt, features]`` (ELU is the caller's)."""

    features: int = 128
    heads: int = 4

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, source, target, direction: str):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r}: choose one of {DIRECTIONS}")
        if self.features % self.heads:
            raise ValueError(f"features ({self.features}) must be a multiple of heads ({self.heads})")
        from_index, to_index = ((graph.senders, graph.receivers) if direction == "doc_to_keyword"
                                else (graph.receivers, graph.senders))
        head_dim = self.features // self.heads
        split = lambda x: x.reshape(x.shape[:-1] + (self.heads, head_dim))  # noqa: E731
        query = split(nn.Dense(self.features, name="query")(target))[to_index]  # W3 h_i  [E, H, d]
        key = split(nn.Dense(self.features, name="key")(source))[from_index]  # W4 h_j
        value = split(nn.Dense(self.features, name="value")(source))[from_index]  # W2 h_j
        logits = jnp.sum(query * key, axis=-1) / jnp.sqrt(head_dim)  # [E, H]
        alpha = jraph.segment_softmax(logits, to_index, num_segments=target.shape[0])
        messages = jraph.segment_sum(alpha[..., None] * value, to_index, num_segments=target.shape[0])
        return nn.Dense(self.features, name="root")(target) + messages.reshape(target.shape[0], self.features)


class GraphRecommender(nn.Module):
    """``__call__(graph, feedback [D] int32) -> scores [D]`` for one student (``feedback``: each
    document's last feedback, ``study.sims.document_students`` codes)."""

    hidden: int = 128
    heads: int = 4

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, feedback):
        conv = lambda name: GraphTransformerConv(self.hidden, self.heads, name=name)  # noqa: E731
        keyword = nn.elu(nn.Dense(self.hidden, name="keyword_in")(graph.nodes["keyword"]))
        doc = nn.elu(nn.Dense(self.hidden, name="doc_in")(graph.nodes["doc"]))
        doc = nn.elu(conv("phi_keyword_to_doc")(graph, keyword, doc, "keyword_to_doc"))
        signal = jax.nn.one_hot(feedback, NUM_FEEDBACKS)
        signal = nn.Dense(self.hidden, name="feedback_out")(nn.relu(nn.Dense(self.hidden, name="feedback_in")(signal)))
        doc = doc * signal
        keyword = nn.elu(conv("psi_doc_to_keyword")(graph, doc, keyword, "doc_to_keyword"))
        doc = nn.elu(conv("psi_keyword_to_doc")(graph, keyword, doc, "keyword_to_doc"))
        return nn.Dense(1, name="score")(doc)[:, 0]


def num_params(params) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
