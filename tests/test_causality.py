"""The temporal-causality contract, proved by perturbation on small random-init models.

For a target interaction (student u at time t, position i of the row), the logits at i must not move when
we change anything the contract hides: u's own item at i and later items/timestamps (later timestamps stay
>= t, as a student's sequence is time-ordered), and every classmate interaction with timestamp >= t (its item,
or its timestamp to another value >= t). Individual must also ignore every classmate and every timestamp.
The social path must be live: changing a classmate's earlier interaction moves STUDY's logits (for the
single-stream "study" only a classmate interaction whose next item in the segment is earlier than t is
visible, the official one-step lag), and changing u's own earlier item moves every policy's logits.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from study.data import reserved_ids
from study.models import registry, sequence_transformer
from tests.test_attention_masks import random_classroom_rows

ROW_LENGTH = 24
VOCAB_SIZE = 30
CHANGED = 1e-4  # the smallest max-abs logit change that counts as "the logits moved"


def _model(policy):
    config = sequence_transformer.default_config()
    config.update(dict(
        attention=policy, vocab_size=VOCAB_SIZE, row_length=ROW_LENGTH, num_layers=2, emb_dim=16,
        num_heads=2, mlp_dim=32, use_grade=True,
    ))
    return registry.build_model(config)


def _other_item(rng, item):
    choices = [x for x in range(reserved_ids.FIRST_ITEM_ID, VOCAB_SIZE) if x != item]
    return rng.choice(choices)


def _pick_targets(rows, rng, count):
    """Target positions (b, i) whose student has an earlier own item and a classmate seen under the lag."""
    targets = []
    for b in rng.permutation(len(rows["item_ids"])):
        items, times, students, positions = (rows[n][b] for n in
                                             ("item_ids", "timestamps", "student_index", "positions"))
        for i in rng.permutation(ROW_LENGTH):
            if not reserved_ids.is_item(items[i]) or positions[i] == 0:
                continue
            lagged_visible = [
                j for j in range(ROW_LENGTH - 1)
                if reserved_ids.is_item(items[j]) and students[j] != students[i]
                and students[j + 1] == students[j] and times[j + 1] < times[i]
            ]
            if lagged_visible:
                targets.append((b, i))
                break
        if len(targets) == count:
            break
    assert len(targets) == count, "random rows hold too few usable targets; change the seed"
    return targets


def _perturbations(row, i, rng, policy):
    """(name, perturbed row, must_change) triples for target position i of one row."""
    items, times, students, positions = (row[n] for n in
                                         ("item_ids", "timestamps", "student_index", "positions"))
    u, t, p = students[i], times[i], positions[i]
    t_max = int(times.max()) + 5
    cases = []

    def perturbed(position, item=None, time=None):
        """A copy of the row with one item id and/or timestamp replaced."""
        copy = {name: value.copy() for name, value in row.items()}
        if item is not None:
            copy["item_ids"][position] = item
        if time is not None:
            copy["timestamps"][position] = time
        return copy

    for j in np.flatnonzero(reserved_ids.is_item(items)):
        own = students[j] == u
        new_item = perturbed(j, item=_other_item(rng, items[j]))
        later_time = perturbed(j, time=rng.integers(t, t_max))  # still >= t
        if own and positions[j] >= p:
            cases.append((f"own item at position {positions[j]}", new_item, False))
        if own and positions[j] > p:
            cases.append((f"own later time at {positions[j]}", later_time, False))
        if not own and times[j] >= t:
            cases.append((f"classmate later item at {j}", new_item, False))
            cases.append((f"classmate later time at {j}", later_time, False))
        if not own and times[j] < t:
            if policy == "individual":
                cases.append((f"classmate earlier item at {j}", new_item, False))
                any_time = perturbed(j, time=rng.integers(0, t_max))
                cases.append((f"classmate earlier time at {j}", any_time, False))
            elif policy == "study_two_stream":
                cases.append((f"classmate earlier item at {j}", new_item, True))
            else:
                next_is_visible = (j + 1 < ROW_LENGTH and students[j + 1] == students[j]
                                   and times[j + 1] < t)
                if next_is_visible:
                    cases.append((f"classmate earlier item at {j}", new_item, True))
        if own and positions[j] == p - 1:
            cases.append(("own previous item", new_item, True))
    if policy == "individual":
        shifted = {name: value.copy() for name, value in row.items()}
        shifted["timestamps"] = rng.integers(0, t_max, size=ROW_LENGTH).astype(np.int32)
        cases.append(("every timestamp redrawn", shifted, False))
    return cases


@pytest.mark.parametrize("policy", ["individual", "study", "study_two_stream"])
def test_logits_depend_only_on_what_the_contract_allows(policy):
    rng = np.random.default_rng({"individual": 1, "study": 2, "study_two_stream": 3}[policy])
    rows = random_classroom_rows(rng, batch_size=12, row_length=ROW_LENGTH, max_students=3, max_time=10)
    model = _model(policy)
    init = jax.jit(functools.partial(model.init, train=False))  # compiled: faster than op by op
    variables = init(jax.random.key(0), {n: jnp.asarray(v) for n, v in rows.items()})
    apply = jax.jit(lambda batch: model.apply(variables, batch, train=False))

    # All perturbations of all targets in one batch: one compilation, one call.
    targets, rows_to_run = [], []
    for b, i in _pick_targets(rows, rng, count=3):
        row = {name: value[b] for name, value in rows.items()}
        cases = _perturbations(row, i, rng, policy)
        targets.append((i, len(rows_to_run), cases))
        rows_to_run += [row] + [case for _, case, _ in cases]
    batch = {name: jnp.asarray(np.stack([row[name] for row in rows_to_run])) for name in rows}
    logits = np.asarray(apply(batch))

    checked_changes = 0
    for i, base, cases in targets:
        for k, (name, _, must_change) in enumerate(cases, start=1):
            moved = np.max(np.abs(logits[base + k, i] - logits[base, i]))
            if must_change:
                checked_changes += 1
                assert moved > CHANGED, f"{policy}: changing {name} did not reach the target at {i}"
            else:
                assert moved <= 1e-6, f"{policy}: changing {name} leaked into the target at {i} ({moved})"
    # Every target has an own previous item; STUDY targets also have a visible classmate.
    assert checked_changes >= (3 if policy == "individual" else 6)
