"""One RecBole 1.2.1 SRGNN training on prepared atomic files, run by ``srgnn_vs_recbole.py`` in RecBole's own
virtual environment (torch, RecBole, numpy < 2; nothing of this repository is imported).

Reads ``<data_path>/<dataset>/<dataset>.{train,valid,test}.inter`` (one line per (prefix, next click) case:
``session_id:token``, ``item_id_list:token_seq``, ``item_id:token``), trains RecBole's ``SRGNN`` with its own
``Trainer`` (validation every epoch on ``valid``, early stopping on ``valid_metric``, the best epoch's model
saved and restored), then scores every test case against every item with ``full_sort_predict`` and writes
JSON: per test case its session token, prefix and target tokens and the pessimistic rank of the target (the
number of other items scored at least as high, as ``study.eval.ranking.ranks_from_scores``), the epochs run and
picked, the training time (wall and process CPU seconds inside the trainer's ``_train_epoch``, so without
validation or checkpoint writes) and the process's peak resident memory.

Usage (by ``srgnn_vs_recbole.py``)::

    <venv>/bin/python benchmarks/srgnn_recbole_run.py --data_path=DIR --dataset=NAME --seed=0 --output=run.json \
        [--epochs=30 --stopping_step=10 --batch_size=100 --embedding_size=100 --learning_rate=0.001]
"""

import argparse
import json
import os
import resource
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--stopping_step", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--embedding_size", type=int, default=100)
    parser.add_argument("--learning_rate", type=float, default=0.001)
    parser.add_argument("--weight_decay", type=float, default=0.0)
    parser.add_argument("--valid_metric", default="MRR@20")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def main():
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SRGNN
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    run_dir = os.path.dirname(os.path.abspath(args.output))
    config = Config(model="SRGNN", dataset=args.dataset, config_dict={
        "data_path": args.data_path, "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "session_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": None,
        "load_col": {"inter": ["session_id", "item_id_list", "item_id"]}, "alias_of_item_id": ["item_id_list"],
        "embedding_size": args.embedding_size, "step": 1, "loss_type": "CE", "train_neg_sample_args": None,
        "epochs": args.epochs, "train_batch_size": args.batch_size, "learner": "adam",
        "learning_rate": args.learning_rate, "weight_decay": args.weight_decay, "eval_step": 1,
        "stopping_step": args.stopping_step, "metrics": ["Recall", "MRR"], "topk": [20],
        "valid_metric": args.valid_metric, "eval_args": {"order": "TO", "mode": "full"},
        "use_gpu": False, "seed": args.seed, "reproducibility": True, "show_progress": False,
        "checkpoint_dir": os.path.join(run_dir, "saved"), "state": "WARNING", "metric_decimal_place": 8,
    })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SRGNN(config, train_data.dataset).to(config["device"])

    timing = {"wall": 0.0, "cpu": 0.0, "epochs": 0}

    class TimedTrainer(Trainer):
        """RecBole's trainer, timing each training epoch (not its validation)."""

        def _train_epoch(self, *a, **kw):
            wall, cpu = time.perf_counter(), time.process_time()
            loss = super()._train_epoch(*a, **kw)
            timing["wall"] += time.perf_counter() - wall
            timing["cpu"] += time.process_time() - cpu
            timing["epochs"] += 1
            return loss

    scores_by_epoch = []
    trainer = TimedTrainer(config, model)
    trainer.fit(train_data, valid_data, verbose=False, saved=True, show_progress=False,
                callback_fn=lambda epoch, score: scores_by_epoch.append(float(score)))
    best_epoch, best = 0, float("-inf")
    for epoch, score in enumerate(scores_by_epoch):
        if score >= best:  # RecBole's rule: a tie is an improvement (recbole.utils.early_stopping)
            best_epoch, best = epoch, score
    state = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
    model.load_state_dict(state["state_dict"])
    model.eval()

    tokens = lambda field, ids: dataset.id2token(field, ids).tolist()  # noqa: E731
    cases = []
    with torch.no_grad():
        for batch in test_data:
            interaction = batch[0]
            scores = model.full_sort_predict(interaction)[:, 1:]  # column 0 is RecBole's padding item
            targets = interaction["item_id"] - 1
            target_scores = scores.gather(1, targets[:, None])
            ranks = ((scores >= target_scores).sum(1) - 1).tolist()
            lengths = interaction["item_length"].tolist()
            prefixes = interaction["item_id_list"].tolist()
            for session, prefix, length, target, rank in zip(
                    tokens("session_id", interaction["session_id"]), prefixes, lengths,
                    tokens("item_id", interaction["item_id"]), ranks):
                cases.append({"session": session, "prefix": tokens("item_id", prefix[:length]),
                              "target": target, "rank": int(rank)})
    result = {
        "cases": cases, "items": int(dataset.item_num - 1), "train_cases": len(train_data.dataset),
        "valid_cases": len(valid_data.dataset), "epochs_run": timing["epochs"], "epoch_picked": best_epoch + 1,
        "validation_scores": scores_by_epoch, "train_wall_seconds": timing["wall"],
        "train_cpu_seconds": timing["cpu"], "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    with open(args.output, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
