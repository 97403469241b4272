"""Tiny run configs shared by the test files (fast: a quadratic task, a few particles)."""

TINY_META_TRAIN = dict(
    architecture={"kind": "learned-adam", "init_lr": 1e-3},
    families=("quadratic",),
    task_bank=2,
    num_particles=4,
    outer_lr=0.1,
    truncation={"length": 10, "min_horizon": 20, "max_horizon": 60, "valid_every": 5},
    validate_every=0,
    checkpoint_every=4,
    log_every=100,
)

TINY_SELF_TRAIN = dict(
    population=4,
    families=("quadratic",),
    task_bank=1,
    num_particles=2,
    truncation={"length": 10, "min_horizon": 20, "max_horizon": 40, "valid_every": 5},
    pbt_every=4,
    checkpoint_every=4,
    log_every=100,
    validation_tasks=("quadratic-16",),
    validation_steps=20,
    validation_seeds=1,
)
