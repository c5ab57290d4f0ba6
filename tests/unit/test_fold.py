"""The one fold (reconciler.fold) as a table of examples: for each effect kind and its edge
cases, the memory before, the effect, and the expected memory, changed records and rollout
rows, all written out (never computed by the fold under test)."""

from __future__ import annotations

import datetime as dt
import typing

import pytest

from reconciler import fold, model, reasons
from reconciler.fold import Folded

T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def t(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


ACTIVE = model.RolloutMemory(
    id=3, image="ami-2", revision="r1", from_image="ami-1", started_at=t(0), phase1_started_at=t(1)
)
FINISHED = model.RolloutMemory(
    id=3,
    image="ami-2",
    revision="r1",
    from_image="ami-1",
    started_at=t(0),
    phase1_started_at=t(1),
    finished_at=t(4),
    result="failed",
    reason="migration failed",
)
SUSPENDED = model.RolloutMemory(
    id=3,
    image="ami-2",
    revision="r1",
    from_image="ami-1",
    started_at=t(0),
    scaling_suspended_at=t(2),
    finished_at=t(4),
    result="succeeded",
)
PENDING = model.Pending("migrate", "ami-2", "r1", "tok-1", t(1), {"MigrationLcImageId": "ami-2"})
FAILURE = model.Failure(
    2, "update rolled back", t(5), t(9), "r1", "ami-2", code=reasons.Reason.UPDATE_ROLLED_BACK
)
PAUSE = model.RuntimePause("incident 42", t(0), t(60))
OWNED = frozenset({"Launch", "Terminate"})

EXAMPLES: list[tuple[str, model.Memory, model.Effect, Folded]] = [
    (
        "start on empty memory: rollout 1",
        model.Memory(),
        model.StartRollout("ami-2", "r1", "ami-1", t(0)),
        Folded(
            model.Memory(
                rollout=model.RolloutMemory(
                    id=1, image="ami-2", revision="r1", from_image="ami-1", started_at=t(0)
                )
            ),
            frozenset({"rollout"}),
            (model.RolloutMemory(1, "ami-2", "r1", "ami-1", t(0)),),
        ),
    ),
    (
        "start with carried phase times after a finished rollout: the next id, nothing superseded",
        model.Memory(rollout=FINISHED),
        model.StartRollout("ami-2", "r2", "ami-1", t(6), phase1_started_at=t(1), migrated_at=t(2)),
        Folded(
            model.Memory(
                rollout=model.RolloutMemory(
                    id=4,
                    image="ami-2",
                    revision="r2",
                    from_image="ami-1",
                    started_at=t(6),
                    phase1_started_at=t(1),
                    migrated_at=t(2),
                )
            ),
            frozenset({"rollout"}),
            (model.RolloutMemory(4, "ami-2", "r2", "ami-1", t(6), t(1), t(2)),),
        ),
    ),
    (
        "start over an active rollout: it is finished as superseded, both rows written",
        model.Memory(rollout=ACTIVE, pending=PENDING),
        model.StartRollout("ami-3", "r2", "ami-1", t(10)),
        Folded(
            model.Memory(
                rollout=model.RolloutMemory(
                    id=4, image="ami-3", revision="r2", from_image="ami-1", started_at=t(10)
                ),
                pending=PENDING,
            ),
            frozenset({"rollout"}),
            (
                model.RolloutMemory(
                    id=3,
                    image="ami-2",
                    revision="r1",
                    from_image="ami-1",
                    started_at=t(0),
                    phase1_started_at=t(1),
                    finished_at=t(10),
                    result="superseded",
                    reason="superseded by a rollout to ami-3 (revision r2)",
                ),
                model.RolloutMemory(4, "ami-3", "r2", "ami-1", t(10)),
            ),
        ),
    ),
    (
        "mark the active rollout: only the given times change",
        model.Memory(rollout=ACTIVE),
        model.MarkRollout(migrated_at=t(2), scaling_suspended_at=t(3)),
        Folded(
            model.Memory(
                rollout=model.RolloutMemory(
                    id=3,
                    image="ami-2",
                    revision="r1",
                    from_image="ami-1",
                    started_at=t(0),
                    phase1_started_at=t(1),
                    migrated_at=t(2),
                    scaling_suspended_at=t(3),
                )
            ),
            frozenset({"rollout"}),
            (
                model.RolloutMemory(
                    id=3,
                    image="ami-2",
                    revision="r1",
                    from_image="ami-1",
                    started_at=t(0),
                    phase1_started_at=t(1),
                    migrated_at=t(2),
                    scaling_suspended_at=t(3),
                ),
            ),
        ),
    ),
    (
        "mark with no rollout: nothing changes",
        model.Memory(pending=PENDING),
        model.MarkRollout(switched_at=t(5)),
        Folded(model.Memory(pending=PENDING)),
    ),
    (
        "mark a finished rollout: nothing changes (history is not rewritten)",
        model.Memory(rollout=FINISHED),
        model.MarkRollout(approved_at=t(5)),
        Folded(model.Memory(rollout=FINISHED)),
    ),
    (
        "finish the active rollout",
        model.Memory(rollout=ACTIVE),
        model.FinishRollout("failed", t(4), "migration failed"),
        Folded(model.Memory(rollout=FINISHED), frozenset({"rollout"}), (FINISHED,)),
    ),
    (
        "finish with none active: nothing changes",
        model.Memory(rollout=FINISHED),
        model.FinishRollout("succeeded", t(8)),
        Folded(model.Memory(rollout=FINISHED)),
    ),
    (
        "set pending",
        model.Memory(rollout=ACTIVE),
        model.SetPending(PENDING),
        Folded(model.Memory(rollout=ACTIVE, pending=PENDING), frozenset({"pending"})),
    ),
    (
        "clear pending",
        model.Memory(pending=PENDING),
        model.ClearPending(),
        Folded(model.Memory(), frozenset({"pending"})),
    ),
    (
        "record a failure",
        model.Memory(),
        model.RecordFailure(FAILURE),
        Folded(model.Memory(failure=FAILURE), frozenset({"failure"})),
    ),
    (
        "clear the failure",
        model.Memory(failure=FAILURE),
        model.ClearFailure(),
        Folded(model.Memory(), frozenset({"failure"})),
    ),
    (
        "clear the runtime pause",
        model.Memory(runtime_pause=PAUSE),
        model.ClearRuntimePause(),
        Folded(model.Memory(), frozenset({"runtime_pause"})),
    ),
    (
        "consume the approval",
        model.Memory(approved_image="ami-2"),
        model.ConsumeApproval(),
        Folded(model.Memory(), frozenset({"approved_image"})),
    ),
    (
        "own scaling processes",
        model.Memory(),
        model.OwnScaling(OWNED),
        Folded(model.Memory(scaling_owned=OWNED), frozenset({"scaling_owned"})),
    ),
    (
        "disown: the latest rollout that suspended scaling records when it resumed",
        model.Memory(rollout=SUSPENDED, scaling_owned=OWNED),
        model.DisownScaling(t(7)),
        Folded(
            model.Memory(
                rollout=model.RolloutMemory(
                    id=3,
                    image="ami-2",
                    revision="r1",
                    from_image="ami-1",
                    started_at=t(0),
                    scaling_suspended_at=t(2),
                    scaling_resumed_at=t(7),
                    finished_at=t(4),
                    result="succeeded",
                )
            ),
            frozenset({"scaling_owned", "rollout"}),
            (
                model.RolloutMemory(
                    id=3,
                    image="ami-2",
                    revision="r1",
                    from_image="ami-1",
                    started_at=t(0),
                    scaling_suspended_at=t(2),
                    scaling_resumed_at=t(7),
                    finished_at=t(4),
                    result="succeeded",
                ),
            ),
        ),
    ),
    (
        "disown when the latest rollout did not suspend scaling: only ownership ends",
        model.Memory(rollout=ACTIVE, scaling_owned=OWNED),
        model.DisownScaling(t(7)),
        Folded(model.Memory(rollout=ACTIVE), frozenset({"scaling_owned"})),
    ),
]


@pytest.mark.parametrize(
    ("memory", "effect", "expected"),
    [example[1:] for example in EXAMPLES],
    ids=[example[0] for example in EXAMPLES],
)
def test_fold_example(memory: model.Memory, effect: model.Effect, expected: Folded) -> None:
    """The fold turns this memory and effect into exactly the expected memory and writes."""
    assert fold.apply(memory, effect) == expected


def test_every_effect_kind_has_an_example() -> None:
    """The table covers each kind of model.Effect."""
    kinds = {type(effect) for _, _, effect, _ in EXAMPLES}
    assert kinds == set(typing.get_args(model.Effect))


def test_a_batch_merges_rows_by_id() -> None:
    """apply_all over start then mark writes the new rollout once, with its mark, and the
    union of what each effect changed."""
    folded = fold.apply_all(
        model.Memory(rollout=ACTIVE),
        [
            model.StartRollout("ami-3", "r2", "ami-1", t(10)),
            model.MarkRollout(phase1_started_at=t(11)),
            model.SetPending(PENDING),
        ],
    )
    new = model.RolloutMemory(4, "ami-3", "r2", "ami-1", t(10), phase1_started_at=t(11))
    superseded = model.RolloutMemory(
        id=3,
        image="ami-2",
        revision="r1",
        from_image="ami-1",
        started_at=t(0),
        phase1_started_at=t(1),
        finished_at=t(10),
        result="superseded",
        reason="superseded by a rollout to ami-3 (revision r2)",
    )
    assert folded == Folded(
        model.Memory(rollout=new, pending=PENDING),
        frozenset({"rollout", "pending"}),
        (superseded, new),
    )


def test_an_empty_batch_changes_nothing() -> None:
    """No effects: the same memory and nothing to write."""
    assert fold.apply_all(model.Memory(rollout=ACTIVE), []) == Folded(model.Memory(rollout=ACTIVE))
