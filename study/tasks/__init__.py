"""Model families on the one training loop: ``config.task`` names one, :func:`build_task` builds it.

======================  ====================================================================  ==============================
``task``                family                                                                module
======================  ====================================================================  ==============================
``next_item``           STUDY, Individual, two-stream, SAMN, SR-GNN (``config.model.name``)   ``study.tasks.next_item``
``knn``                 KNN nearest contexts, fitted in one pass                               ``study.tasks.nearest_contexts``
``irt``                 Bayesian 2PL / factorization / hierarchical IRT by SVI                 ``study.tasks.irt``
``eduqate``             EduQate, WIQL, Threshold Whittle, Myopic, Random (``model.policy``)    ``study.tasks.curriculum_bandits``
``knowledge_tracing``   DKVMN, DQKT, DKT, BKT knowledge tracing (``config.model.name``)         ``study.tasks.knowledge_tracing``
``gnn_rl``              GNN-RL graph recommender, PPO MLP (imitation, REINFORCE, PPO)          ``study.tasks.document_sequencing``
======================  ====================================================================  ==============================

A family is one module here (a ``study.train.task.Task``) plus one config file in ``configs/``.
"""

import ml_collections

from study.tasks.curriculum_bandits import CurriculumBanditTask
from study.tasks.document_sequencing import DocumentSequencingTask
from study.tasks.irt import IrtTask
from study.tasks.knowledge_tracing import KnowledgeTracingTask
from study.tasks.nearest_contexts import NearestContextsTask
from study.tasks.next_item import NextItemTask
from study.train import loop, sharding

TASKS = {
    "next_item": NextItemTask,
    "knn": NearestContextsTask,
    "irt": IrtTask,
    "eduqate": CurriculumBanditTask,
    "knowledge_tracing": KnowledgeTracingTask,
    "gnn_rl": DocumentSequencingTask,
}


def build_task(config: ml_collections.ConfigDict, mesh=None):
    """The task named by ``config.task`` on a copy of ``config`` (the caller's is never changed), on ``mesh``
    (default: ``config.mesh_shape`` over every device, after ``jax.distributed`` is set up if asked)."""
    config = ml_collections.ConfigDict(config.to_dict())
    name = config.get("task", "")
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (config field `task`); choose one of {sorted(TASKS)}")
    loop.maybe_initialize_distributed(config)
    if mesh is None:
        mesh = sharding.make_mesh(config.mesh_shape.to_dict())
    return TASKS[name](config, mesh)
