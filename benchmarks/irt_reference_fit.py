"""Reference IRT fits for the benchmarks, run with the Python of a separate environment that has `girth` and/or
`py-irt` (the benchmarks create it; neither is a dependency of `study`, and this file imports nothing of it).

    <venv>/bin/python benchmarks/irt_reference_fit.py --method=girth --input=responses.npz --output=fit.json
    <venv>/bin/python benchmarks/irt_reference_fit.py --method=py-irt --epochs=2000 --input=... --output=...

``--input``: an ``.npz`` with ``student [N]``, ``question [N]``, ``correct [N]`` and ``universe [2]``
(students, questions), as ``study.data.responses.save_npz`` writes it. ``--output``: JSON with ``difficulty``,
``discrimination``, ``ability`` (lists), ``seconds`` (the fit alone) and the method's settings.

* ``girth``: marginal maximum likelihood 2PL (``girth.twopl_mml``) on the question x student matrix, pairs not
  answered tagged missing.
* ``py-irt``: py-irt's 2PL (Pyro SVI, full batch, its default priors and learning rate) for ``--epochs``.

The benchmarks call it through :func:`reference_fit` (standard library only, so they import it from here).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def reference_python(venv: str, package: str) -> str:
    """The Python of ``venv`` with ``package`` importable, installing it (and the venv) when missing."""
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    module = package.replace("-", "_")
    if subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode:
        subprocess.run([python, "-m", "pip", "install", "-q", package], check=True)
    return python


def reference_fit(python: str, method: str, log_path: str, out_path: str, **options) -> dict:
    command = [python, os.path.abspath(__file__), f"--method={method}",
               f"--input={log_path}", f"--output={out_path}"] + [f"--{k}={v}" for k, v in options.items()]
    subprocess.run(command, check=True, capture_output=True, text=True)
    with open(out_path) as handle:
        return json.load(handle)


def fit_girth(data) -> dict:
    import girth

    students, questions = (int(x) for x in data["universe"])
    matrix = np.full((questions, students), -1, np.int64)
    matrix[data["question"], data["student"]] = data["correct"]
    matrix = girth.tag_missing_data(matrix, [0, 1])
    start = time.perf_counter()
    result = girth.twopl_mml(matrix)
    seconds = time.perf_counter() - start
    return {"difficulty": np.asarray(result["Difficulty"]).tolist(),
            "discrimination": np.asarray(result["Discrimination"]).tolist(),
            "ability": np.asarray(result.get("Ability", np.zeros(students))).tolist(), "seconds": seconds,
            "settings": {"method": "girth.twopl_mml", "version": girth.__version__ if hasattr(girth, "__version__")
                         else "unknown"}}


def fit_py_irt(data, epochs: int) -> dict:
    import torch
    from py_irt.config import IrtConfig
    from py_irt.dataset import Dataset
    from py_irt.training import IrtModelTrainer

    students, questions = (int(x) for x in data["universe"])
    # py-irt's own readers build a wide student x question table; a sparse log of millions of responses is
    # handed over as its long-format fields instead (identity encodings: index i is id "i").
    dataset = Dataset.model_construct(
        item_ids=[str(j) for j in range(questions)], subject_ids=[str(i) for i in range(students)],
        item_id_to_ix={str(j): j for j in range(questions)}, ix_to_item_id={j: str(j) for j in range(questions)},
        subject_id_to_ix={str(i): i for i in range(students)}, ix_to_subject_id={i: str(i) for i in range(students)},
        observation_subjects=data["student"].tolist(), observation_items=data["question"].tolist(),
        observations=data["correct"].astype(float).tolist(), training_example=[True] * len(data["correct"]),
        anchor_items=[])
    config = IrtConfig(model_type="2pl", epochs=epochs, log_every=max(1, epochs // 10))
    trainer = IrtModelTrainer(config=config, data_path=None, dataset=dataset, verbose=False)
    start = time.perf_counter()
    trainer.train(device="cpu")
    seconds = time.perf_counter() - start
    params = trainer.last_params
    return {"difficulty": list(params["diff"]), "discrimination": list(params["disc"]),
            "ability": list(params["ability"]), "seconds": seconds,
            "settings": {"method": "py-irt 2pl (Pyro SVI, full batch, defaults)", "epochs": epochs,
                         "torch_threads": torch.get_num_threads(), "lr": config.lr, "priors": config.priors}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=("girth", "py-irt"), required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--epochs", type=int, default=2000)
    args = parser.parse_args()
    with np.load(args.input, allow_pickle=False) as npz:
        data = {name: npz[name] for name in ("student", "question", "correct", "universe")}
    result = fit_girth(data) if args.method == "girth" else fit_py_irt(data, args.epochs)
    with open(args.output, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
