"""Shared by the SR-GNN session benchmarks (``srgnn_diginetica.py``, ``srgnn_vs_recbole.py``): the DIGINETICA split,
the reference training settings on it, and P@20 / MRR@20 of the test cases with intervals.

Settings (``reference_config``): ``configs/srgnn.py:default`` (d = 100, one GNN step, U(-0.1, 0.1)
initialisation, Adam at a constant 0.001 with PyTorch's b2 / eps and no weight decay, as RecBole 1.2.1's SRGNN
and trainer) with the paper's targets (``model.loss = "session"``: every click but a session's first), one
validation of P@20 / MRR@20 per epoch on the held-out latest training sessions and early stopping on MRR@20:
training stops after ``patience`` epochs without a strictly better value, and the best epoch's state is the one
tested. ``model.click_budget`` / ``model.node_budget`` (the packed prefix graphs' clicks and nodes) are sized
for a typical training batch with a margin (:func:`budgets`); a rare larger batch runs at the worst case.

Nothing here reads the test split before a run has finished training.
"""

import os

K = 20


def load_split(input_path: str, validation_fraction: float):
    """``(splits, report, row_length)``: ``data_pipeline.diginetica.load_splits`` with a validation slice of
    the latest training sessions; ``row_length`` = the longest session of any split."""
    from data_pipeline import diginetica

    splits, report = diginetica.load_splits(input_path, validation_fraction=validation_fraction)
    row_length = max(len(s.items) for s in splits.train + splits.validation + splits.test)
    return splits, report, row_length


def budgets(sessions, batch_size: int, spread: float = 5.0) -> tuple[int, int]:
    """``(click_budget, node_budget)`` for random batches of ``batch_size`` of these sessions: the mean number
    of clicks (pairs: ``n (n - 1) / 2`` for a session of ``n`` clicks) of a batch plus ``spread`` standard
    deviations (sampling without replacement), rounded up to a multiple of 32, and never more than the
    ``batch_size`` largest sessions hold. A batch beyond them still gets exact results, slower
    (``study.models.srgnn``)."""
    import numpy as np

    clicks = np.array([len(s.items) for s in sessions], np.float64)
    result = []
    for values in (clicks, clicks * (clicks - 1) / 2):
        n, b = len(values), min(batch_size, len(values))
        spread_sd = np.sqrt(b * values.var() * (n - b) / max(n - 1, 1))
        typical = int(np.ceil((b * values.mean() + spread * spread_sd) / 32) * 32)
        result.append(max(min(typical, int(np.sort(values)[::-1][:b].sum())), 1))
    return tuple(result)


def reference_config(splits, data_dir: str, row_length: int, *, batch_size: int, max_epochs: int, patience: int,
                     seed: int):
    """``configs/srgnn.py:default`` on the written split (module docstring); returns ``(config, epoch_steps)``."""
    from configs import common, srgnn as srgnn_config

    rows = len(splits.train)
    epoch_steps = rows // batch_size
    if epoch_steps < 1:
        raise ValueError(f"batch_size={batch_size} is larger than the {rows} training sessions")
    config = srgnn_config.get_config("default")
    config.data_dir = data_dir
    config.model.row_length = row_length
    config.model.loss = "session"
    config.model.click_budget, config.model.node_budget = budgets(splits.train, batch_size)
    config.batch_size = batch_size
    config.steps = max_epochs * epoch_steps
    config.evals.loss.every = -1
    config.evals.session = common.evaluation(every=epoch_steps, max_batches=0)
    config.early_stopping.metric = f"session/MRR@{K}"
    config.early_stopping.mode = "max"
    config.early_stopping.patience = patience
    config.checkpoint_every = config.steps
    config.log_every = epoch_steps
    config.shuffle_buffer = rows
    config.seed = seed
    return config, epoch_steps


def case_ranks(predict, files, row_length, batch_size):
    """``(ranks, session_index)`` of every test case (int arrays), scored by ``predict(batch) -> [B, L, V]``."""
    import numpy as np

    from study.data import input_pipeline
    from study.eval import ranking, session_metrics

    ranks, sessions, row_offset = [], [], 0
    for batch in input_pipeline.eval_batches(files, batch_size, row_length=row_length, process_index=0,
                                             process_count=1):
        batch_ranks = np.asarray(ranking.ranks_from_scores(predict(batch), batch["item_ids"]))
        mask = session_metrics.next_click_mask(batch["item_ids"], batch["positions"])
        mask &= batch["row_valid"][:, None] > 0
        ranks.append(batch_ranks[mask])
        sessions.append((row_offset + np.arange(mask.shape[0]))[:, None].repeat(mask.shape[1], 1)[mask])
        row_offset += mask.shape[0]
    return np.concatenate(ranks), np.concatenate(sessions)


def metrics_with_intervals(ranks, sessions, seed=0):
    """P@K / MRR@K in percent with 95% percentile-bootstrap intervals over test sessions."""
    import numpy as np

    from study.eval import bootstrap, session_metrics

    ranks, sessions = np.asarray(ranks), np.asarray(sessions)
    _, unit = np.unique(sessions, return_inverse=True)
    hits = np.bincount(unit, weights=ranks < K)
    reciprocal = np.bincount(unit, weights=np.where(ranks < K, 1.0 / (ranks + 1.0), 0.0))
    cases = np.bincount(unit)

    def statistic(weights):
        total = np.sum(weights * cases)
        return 100.0 * np.array([np.sum(weights * hits), np.sum(weights * reciprocal)]) / total

    low, high = bootstrap.percentile_interval(statistic, len(cases), num_resamples=1000, seed=seed)
    point = session_metrics.session_metrics(ranks, K)
    return {
        f"P@{K}": 100.0 * point[f"P@{K}"], f"MRR@{K}": 100.0 * point[f"MRR@{K}"],
        f"P@{K}_95ci": [float(low[0]), float(high[0])], f"MRR@{K}_95ci": [float(low[1]), float(high[1])],
        "test_cases": point["test_cases"], "test_sessions": int(len(cases)),
    }


def train_and_rank_test(config, run_dir: str):
    """Trains ``config`` in ``run_dir`` (the one loop), restores the state early stopping kept, and ranks every
    test case: ``(train result, ranks, session_index)``."""
    from study.commands import train
    from study.data import input_pipeline
    from study.tasks import build_task
    from study.train import loop

    result = train.train(config, run_dir)
    task = build_task(config)
    state = loop.restore_state(task, task.config, run_dir)
    test_files = input_pipeline.dataset_files(config.data_dir, "individual", "test")
    ranks, sessions = case_ranks(task.predictor(state), test_files, config.model.row_length, config.batch_size)
    return result, ranks, sessions


def relative_path(path: str, repo: str) -> str:
    return os.path.relpath(os.path.abspath(path), os.path.dirname(repo))
