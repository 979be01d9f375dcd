"""Courses of educational documents as the GNN-RL simulator and recommender see them (Vassoyan et al. 2024).

A course is a set of documents; each document mentions keywords (100-d embeddings) and teaches knowledge
components (KCs). KCs are joined by *prerequisite* edges (every student needs them) and *preference* edges
(each student keeps each one with probability ``preference_p``). Background KCs are taught by no document: a
student has them or not, and what depends on them is out of reach without them.

Two shapes (appendix D.1 of the paper):

* sequential courses (``linear/...``): one KC per document, KC ``i`` requires KC ``i - 1``, value 1 each;
* the ``intro_to_ml`` course: KCs ``"c_s"`` on a 3 x 11 grid (column ``c`` = chapter 0-10, row ``s`` = level
  0-2), document ``"c_s"`` teaches ``c_s`` and ``c_(s+1)``; prerequisites ``(c-1)_s -> c_s`` on rows 1 and 2,
  preference edges ``c_(s-1) -> c_s`` (vertical), ``background_2 -> 0_2`` (from
  ``background_requirements.json``) so that the background gates the whole bottom row; KC values 1 / 2 / 3 by
  row, background 0.

Files of a course folder (``../shared/data/gnn_rl_corpora/corpora/extracted_data/<kind>/<group>/<name>``):
``doc2kw.json`` ``{doc: [keyword, ...]}``, ``doc2kc.json`` ``{doc: [kc, ...]}``, optional
``background_requirements.json`` ``{kc: [background kc, ...]}`` and
``embedding/standard1/embeddings_{matrix.npy,keywords.json}`` (row ``i`` of the ``[K, 100]`` matrix is keyword
``i``).
"""

import dataclasses
import json
import os

import numpy as np

SHARED_CORPORA = os.path.join("..", "shared", "data", "gnn_rl_corpora", "corpora", "extracted_data")
SEQUENTIAL_CORPORA = tuple(
    [os.path.join("linear", "hand_made", f"corpus{i}") for i in range(1, 7)]
    + [os.path.join("linear", "new_corpora", name) for name in (
        "3Blue1Brown-_Calculus", "Artificial_Intelligence", "Building_recommendation_systems_with_TensorFlow",
        "Calculus", "Deep_Learning_Fundamentals_-_Intro_to_Neural_Networks", "ML_Zero_to_Hero",
        "Natural_Language_Processing_(NLP)_Zero_to_Hero", "Statistics")])
INTRO_TO_ML = os.path.join("non_linear", "hand_made", "intro_to_ml")
ROW_VALUES = (1.0, 2.0, 3.0)  # intro_to_ml KC value by grid row (level)


@dataclasses.dataclass(frozen=True)
class Course:
    """One course, NumPy arrays (``D`` documents, ``K`` keywords, ``C`` KCs, ``E`` document-keyword edges).

    Attributes:
      name: the folder's name.
      doc_names, keyword_names, kc_names: tuples of lengths ``D``, ``K``, ``C``.
      keyword_features: ``[K, F] float32`` keyword embeddings.
      edge_doc, edge_keyword: ``[E] int32`` document and keyword of each mention.
      doc_kc: ``[D, C] bool`` KCs each document teaches.
      prerequisite: ``[C, C] bool``, ``[a, b]``: KC ``a`` is required for KC ``b`` by every student.
      preference: ``[C, C] bool``, ``[a, b]``: a preference edge a student keeps with ``preference_p``.
      kc_value: ``[C] float32`` reward for acquiring each KC.
      background: ``[C] bool`` KCs no document teaches.
      episode_length: recommendations per episode.
    """

    name: str
    doc_names: tuple
    keyword_names: tuple
    kc_names: tuple
    keyword_features: np.ndarray
    edge_doc: np.ndarray
    edge_keyword: np.ndarray
    doc_kc: np.ndarray
    prerequisite: np.ndarray
    preference: np.ndarray
    kc_value: np.ndarray
    background: np.ndarray
    episode_length: int

    @property
    def num_docs(self) -> int:
        return len(self.doc_names)

    @property
    def num_keywords(self) -> int:
        return len(self.keyword_names)

    @property
    def num_kcs(self) -> int:
        return len(self.kc_names)


def _read_json(path: str, required: bool = True):
    if not os.path.exists(path):
        if required:
            raise FileNotFoundError(f"{path}: missing; a course folder needs doc2kw.json, doc2kc.json and "
                                    "embedding/standard1/embeddings_{matrix.npy,keywords.json}")
        return None
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error


def _sorted_docs(names) -> list:
    """Documents in course order: by integer id, or by (chapter, section) for ``"c_s"`` ids."""
    return sorted(names, key=lambda name: tuple(int(part) for part in name.split("_")))


def load_course(folder: str, episode_length: int | None = None) -> Course:
    """The course in ``folder`` (a folder under ``SHARED_CORPORA``): grid rules when its KCs are named
    ``"c_s"``, chain rules when they are integers. ``episode_length`` default: 11 for the grid (the paper's),
    the number of documents for a chain (time to learn every KC)."""
    doc2kw = _read_json(os.path.join(folder, "doc2kw.json"))
    doc2kc = _read_json(os.path.join(folder, "doc2kc.json"))
    background_of = _read_json(os.path.join(folder, "background_requirements.json"), required=False) or {}
    embedding_dir = os.path.join(folder, "embedding", "standard1")
    keywords = _read_json(os.path.join(embedding_dir, "embeddings_keywords.json"))
    matrix_path = os.path.join(embedding_dir, "embeddings_matrix.npy")
    if not os.path.exists(matrix_path):
        raise FileNotFoundError(f"{matrix_path}: missing (the [keywords, 100] float32 embedding matrix)")
    matrix = np.load(matrix_path, allow_pickle=False)
    if matrix.ndim != 2 or matrix.shape[0] != len(keywords):
        raise ValueError(f"{matrix_path}: shape {matrix.shape} does not match the {len(keywords)} keywords of "
                         "embeddings_keywords.json")
    if set(doc2kw) != set(doc2kc):
        raise ValueError(f"{folder}: doc2kw.json and doc2kc.json name different documents: "
                         f"{sorted(set(doc2kw) ^ set(doc2kc))[:5]}")
    docs = _sorted_docs(doc2kw)
    row_of = {name: i for i, name in enumerate(keywords)}
    used = []
    for doc in docs:
        for keyword in doc2kw[doc]:
            if keyword not in row_of:
                raise ValueError(f"{folder}/doc2kw.json: keyword {keyword!r} of document {doc!r} has no row in "
                                 f"{embedding_dir}/embeddings_keywords.json")
            if keyword not in used:
                used.append(keyword)
    keyword_index = {name: i for i, name in enumerate(used)}
    edges = [(d, keyword_index[k]) for d, doc in enumerate(docs) for k in dict.fromkeys(doc2kw[doc])]
    regular = sorted({kc for doc in docs for kc in doc2kc[doc]},
                     key=lambda name: tuple(int(part) for part in name.split("_")))
    grid = all("_" in kc for kc in regular)
    background = sorted({b for needs in background_of.values() for b in needs})
    kcs = regular + background
    kc_index = {name: i for i, name in enumerate(kcs)}
    num_kcs = len(kcs)
    doc_kc = np.zeros((len(docs), num_kcs), bool)
    for d, doc in enumerate(docs):
        doc_kc[d, [kc_index[kc] for kc in doc2kc[doc]]] = True
    prerequisite = np.zeros((num_kcs, num_kcs), bool)
    preference = np.zeros((num_kcs, num_kcs), bool)
    value = np.zeros(num_kcs, np.float32)
    for kc in regular:
        b = kc_index[kc]
        if grid:
            chapter, level = (int(part) for part in kc.split("_"))
            value[b] = ROW_VALUES[level]
            if level > 0:
                preference[kc_index[f"{chapter}_{level - 1}"], b] = True
                if chapter > 0:
                    prerequisite[kc_index[f"{chapter - 1}_{level}"], b] = True
        else:
            value[b] = 1.0
            if b > 0:
                prerequisite[b - 1, b] = True
    for kc, needs in background_of.items():
        if kc not in kc_index:
            raise ValueError(f"{folder}/background_requirements.json: KC {kc!r} is taught by no document")
        for need in needs:
            prerequisite[kc_index[need], kc_index[kc]] = True
    return Course(
        name=os.path.basename(os.path.normpath(folder)), doc_names=tuple(docs), keyword_names=tuple(used),
        kc_names=tuple(kcs), keyword_features=matrix[[row_of[k] for k in used]].astype(np.float32),
        edge_doc=np.array([d for d, _ in edges], np.int32), edge_keyword=np.array([k for _, k in edges], np.int32),
        doc_kc=doc_kc, prerequisite=prerequisite, preference=preference, kc_value=value,
        background=np.isin(np.arange(num_kcs), [kc_index[b] for b in background]),
        episode_length=int(episode_length or (11 if grid else len(docs))))


def corpora_root(root: str = "") -> str:
    """``root`` or the shared corpora beside the repository (run from the repository root)."""
    path = root or SHARED_CORPORA
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no corpora folder; pass the extracted_data folder of "
                                "../shared/data/gnn_rl_corpora (config field model.corpora_dir)")
    return path


@dataclasses.dataclass(frozen=True)
class Dims:
    """Padded sizes shared by a set of courses (one compiled program for all of them)."""

    docs: int
    keywords: int
    kcs: int
    edges: int


def common_dims(courses) -> Dims:
    """Sizes that fit every course plus one padding document and keyword (padded edges point at them)."""
    return Dims(docs=max(c.num_docs for c in courses) + 1, keywords=max(c.num_keywords for c in courses) + 1,
                kcs=max(c.num_kcs for c in courses), edges=max(len(c.edge_doc) for c in courses))


def padded(course: Course, dims: Dims) -> dict:
    """The course as fixed-size arrays: ``doc_mask [Dp]``, ``keyword_features [Kp, F]``, ``edge_doc /
    edge_keyword [Ep]`` (padding edges join the last padding document and keyword), ``doc_kc [Dp, Cp]``,
    ``prerequisite / preference [Cp, Cp]``, ``kc_value [Cp]``, ``background / kc_mask [Cp]``."""
    d, k, c, e = course.num_docs, course.num_keywords, course.num_kcs, len(course.edge_doc)
    if d >= dims.docs or k >= dims.keywords or c > dims.kcs or e > dims.edges:
        raise ValueError(f"course {course.name} ({d} docs, {k} keywords, {c} KCs, {e} edges) does not fit {dims}")

    def pad(array, shape, fill=0):
        out = np.full(shape, fill, array.dtype)
        out[tuple(slice(0, n) for n in array.shape)] = array
        return out

    return {
        "doc_mask": np.arange(dims.docs) < d,
        "keyword_features": pad(course.keyword_features, (dims.keywords, course.keyword_features.shape[1])),
        "edge_doc": pad(course.edge_doc, (dims.edges,), dims.docs - 1),
        "edge_keyword": pad(course.edge_keyword, (dims.edges,), dims.keywords - 1),
        "doc_kc": pad(course.doc_kc, (dims.docs, dims.kcs)),
        "prerequisite": pad(course.prerequisite, (dims.kcs, dims.kcs)),
        "preference": pad(course.preference, (dims.kcs, dims.kcs)),
        "kc_value": pad(course.kc_value, (dims.kcs,)),
        "background": pad(course.background, (dims.kcs,)),
        "kc_mask": np.arange(dims.kcs) < c,
    }
