"""The training configuration, the train state and the optimiser (§2.3: SGD with momentum, step schedules)."""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from cnnlab.errors import CnnlabError


# The compute dtype of each precision policy; parameters and optimiser state are float32 under both.
PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(precision: str):
    """The dtype a model computes in under ``precision`` (``"float32"`` | ``"bfloat16"``): the ``dtype`` argument
    of every cnnlab model and ``cnnlab.nn`` layer."""
    if precision not in PRECISIONS:
        raise CnnlabError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. Each task's config dataclass extends it (``cnnlab/<task>/config.py``).

    The learning rate is piecewise constant: it starts at ``learning_rate`` and is multiplied by
    ``lr_scales[i]`` at step ``lr_boundaries[i]``, e.g. §6.3's warm-up and decay
    ``lr_boundaries=(200, 1000, 70_000, 90_000), lr_scales=(10, 10, 0.1, 0.1)``. ``schedule="cosine"`` is
    a linear warm-up over ``warmup_steps`` to ``learning_rate``, then a cosine decay to 0 at ``steps``.
    ``optimizer="adamw"`` replaces SGD by AdamW (Loshchilov & Hutter), whose ``weight_decay`` is decoupled.

    ``time_budget`` (minutes, cosine schedule only): the whole run (compilation, validations and the test
    included) should take about this long, on whatever machine it runs. ``steps`` is then the most steps: at
    the end of the warm-up the engine measures the step and validation times and ends the cosine at the step
    that fits the budget (``cnnlab.train.loop.steps_within_budget``), never later than ``steps``. At every later
    validation (without a validation set: every checkpoint) it checks the deadline again with the speed since
    the last check, and if the machine has slowed so much that the fitted length would overrun the budget,
    it ends the cosine earlier (a recompilation each time).

    ``precision`` is the mixed-precision policy (``compute_dtype``): ``"bfloat16"`` runs the model's activations,
    matmuls and convolutions in bfloat16 (the task builds its model with ``dtype=compute_dtype(precision)``)
    while parameters, optimiser state, batch-norm statistics and the loss stay float32, as in Flax's ImageNet
    example and big_vision; ``"float32"`` runs everything in float32.
    """
    steps: int
    batch_size: int
    learning_rate: float
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0        # SGD: L2 penalty added to the gradient (coupled); AdamW: decoupled
    optimizer: str = "sgd"           # "sgd" (with momentum, the paper's) or "adamw" (not in the paper)
    schedule: str = "piecewise"      # "piecewise" (lr_boundaries / lr_scales) or "cosine" (warm-up + cosine)
    warmup_steps: int = 0            # for schedule="cosine"
    grad_clip_norm: float | None = None
    time_budget: float | None = None  # minutes; with schedule="cosine", fit the run's length to it
    # Gradient of each batch computed in micro-batches of this many examples, one compiled call each, then
    # applied once: the same update for models without batch statistics, with the activation memory of a
    # micro-batch (the TCN at batch 100 on the 2-core CPU: as fast as whole batches, docs/performance.md).
    microbatch_size: int | None = None
    precision: str = "float32"       # "float32" or "bfloat16" (mixed precision, see compute_dtype)
    lr_boundaries: tuple = ()
    lr_scales: tuple = ()
    eval_every: int = 500            # validate (and maybe pick as best) every this many steps
    checkpoint_every: int = 500      # Orbax checkpoint every this many steps (and at the end)
    eval_batch_size: int = 500
    log_every: int = 50              # train metrics to metrics.jsonl / progress bar
    select_metric: str = "loss"      # validation metric that picks the best weights (§4.3)
    select_mode: str = "min"         # "min" or "max"
    seed: int = 0
    # Display and keeping settings (with log_every and checkpoint_every): a resume may change them
    # (cnnlab.train.workdir.DISPLAY); every other field must match the run's.
    max_to_keep: int = 2
    progress: bool = True

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every", "eval_batch_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CnnlabError(f"TrainConfig: {name} must be a positive int, got {value!r}")
        if self.microbatch_size is not None and (
                isinstance(self.microbatch_size, bool) or not isinstance(self.microbatch_size, int)
                or self.microbatch_size < 1 or self.batch_size % self.microbatch_size):
            raise CnnlabError(f"TrainConfig: microbatch_size must be a positive int dividing batch_size "
                              f"{self.batch_size}, got {self.microbatch_size!r}")
        if len(self.lr_boundaries) != len(self.lr_scales):
            raise CnnlabError(f"TrainConfig: lr_boundaries {self.lr_boundaries} and lr_scales "
                              f"{self.lr_scales} must have the same length")
        if list(self.lr_boundaries) != sorted(self.lr_boundaries):
            raise CnnlabError(f"TrainConfig: lr_boundaries must increase, got {self.lr_boundaries}")
        if self.optimizer not in ("sgd", "adamw"):
            raise CnnlabError(f"TrainConfig: optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("piecewise", "cosine"):
            raise CnnlabError(f"TrainConfig: schedule must be 'piecewise' or 'cosine', got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise CnnlabError(f"TrainConfig: precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.schedule == "cosine" and not 0 <= self.warmup_steps < self.steps:
            raise CnnlabError(f"TrainConfig: warmup_steps must be in [0, steps) for the cosine schedule, got "
                              f"{self.warmup_steps} with steps {self.steps}")
        if self.time_budget is not None:
            if isinstance(self.time_budget, bool) or not isinstance(self.time_budget, (int, float)) or not (
                    0 < self.time_budget < float("inf")):
                raise CnnlabError(f"TrainConfig: time_budget must be a positive number of minutes, got "
                                  f"{self.time_budget!r}")
            if self.schedule != "cosine":
                raise CnnlabError("TrainConfig: time_budget needs schedule='cosine' (a warm-up + cosine ends where the "
                                  "budget does; a piecewise schedule's boundaries are fixed steps), e.g. "
                                  "`cnnlab train seqmnist --schedule fast`")
        if self.select_mode not in ("min", "max"):
            raise CnnlabError(f"TrainConfig: select_mode must be 'min' or 'max', got {self.select_mode!r}")
        object.__setattr__(self, "lr_boundaries", tuple(int(b) for b in self.lr_boundaries))
        object.__setattr__(self, "lr_scales", tuple(float(s) for s in self.lr_scales))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
    """Piecewise-constant learning rate: ``learning_rate`` times the product of the scales passed so far;
    or, for ``schedule="cosine"``, Optax's linear warm-up + cosine decay."""
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, config.warmup_steps, config.steps)
    scales = {}
    for boundary, scale in zip(config.lr_boundaries, config.lr_scales):
        scales[boundary] = scales.get(boundary, 1.0) * scale  # repeated boundaries multiply
    return optax.piecewise_constant_schedule(config.learning_rate, scales)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """SGD with momentum (Eq. (5)–(6) family) on the schedule, optional L2 and clipping; or AdamW."""
    parts = []
    if config.grad_clip_norm is not None:
        parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    if config.optimizer == "adamw":
        return optax.chain(*parts, optax.adamw(learning_rate_schedule(config), weight_decay=config.weight_decay))
    if config.weight_decay:
        parts.append(optax.add_decayed_weights(config.weight_decay))
    parts.append(optax.sgd(learning_rate_schedule(config), momentum=config.momentum or None,
                           nesterov=config.nesterov))
    return optax.chain(*parts)


class TrainState(train_state.TrainState):
    """Flax's TrainState (step, params, opt_state) plus BatchNorm statistics and the run's PRNG key.

    ``rng`` never changes: step ``s`` uses ``jax.random.fold_in(rng, s)``, so a resumed run draws the same
    random numbers as an uninterrupted one.
    """
    batch_stats: Any = None
    rng: jax.Array = None


@functools.lru_cache(maxsize=16)
def _jitted_init(model):
    return jax.jit(lambda key, *xs: model.init({"params": key, "dropout": key}, *xs, train=False))


def create_train_state(model, config: TrainConfig, example_inputs: tuple, init_variables=None) -> TrainState:
    """Initialise ``model`` on ``example_inputs`` (a tuple of arrays, batch first) with ``config.seed``;
    ``init_variables(variables) -> variables`` (optional) then replaces some, e.g. with pretrained weights."""
    init_key, run_key = jax.random.split(jax.random.key(config.seed))
    variables = _jitted_init(model)(init_key, *example_inputs)
    if init_variables is not None:
        variables = init_variables(variables)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=make_optimizer(config),
                             batch_stats=variables.get("batch_stats", {}),
                             rng=jax.random.key_data(run_key)).replace(step=jnp.asarray(0, jnp.int32))
