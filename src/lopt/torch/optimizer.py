"""``LearnedOptimizer``: a saved learned optimizer as a ``torch.optim.Optimizer``.

The update is computed in PyTorch (``lopt.torch.fast`` from the shared specification;
``lopt.torch.network_steps`` for the ``mlp`` and ``rnn-mlp`` architectures), in float32, and
equals the JAX optimizer's (``lopt.learned``) to float32 rounding. The parameters of all param
groups, in order, play the role of the JAX pytree's leaves.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable

import torch

from lopt.errors import LoptError, check_count, say_once
from lopt.torch import fast, network_steps
from lopt.torch.checks import (
    check_loss,
    check_multiplier,
    check_parameter,
    check_state_shapes,
    gradients_overflow,
)
from lopt.torch.compiled import compiled_tensor_update
from lopt.torch.files import load
from lopt.torch.network_steps import NetworkSteps, scalar


class LearnedOptimizer(NetworkSteps, torch.optim.Optimizer):
    """A meta-trained learned optimizer: no learning rate to tune.

    Args:
        params: parameters or param groups, as for any ``torch.optim.Optimizer``. A group may set
            ``lr_multiplier`` (default: the constructor's).
        name_or_path: a shipped optimizer (``"small"``, ``"rnn-mlp"``) or a saved one: a
            ``.safetensors``/``.json`` file, its stem, or a run directory.
        lr_multiplier: scale of every update (1.0 is the optimizer as meta-trained).
        compile: run each tensor's per-parameter update through ``torch.compile``
            (TorchInductor; needs a C++ compiler on CPU): the same update, up to about twice as
            fast on large models, at the price of a compilation (seconds) at the first step
            (``lopt.torch.compiled``). A "fast" optimizer compiles its whole step instead, all
            tensors in one program (``lopt.torch.fast``).
        total_steps: the length of the training run, for optimizers that condition on it (an
            "mlp" or "rnn-mlp" with ``with_horizon_feature`` or ``distance_decay``), as
            ``lopt.load(..., total_steps=...)``;
            ``None``: unknown (others ignore it).

    Example::

        opt = LearnedOptimizer(model.parameters(), "small")
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss)  # or opt.step(closure); the loss feeds the loss features, if any

    A parameter whose ``.grad`` is ``None``, or that is empty, takes no part in a step: its
    accumulators, step count and LSTM state stay frozen, and the step is the JAX update of the
    pytree of the parameters that do have gradients (each with its own step count).

    A gradient with a NaN or an infinity raises ``LoptError`` before anything changes (one
    non-finite entry would otherwise turn its whole tensor and the optimizer's state to NaN,
    through the per-tensor statistics). A step whose gradients are finite but whose squares
    overflow float32 (the sum of a tensor's squared entries is not finite, as with an entry
    beyond ≈ 1.8·10¹⁹) is skipped as a whole: nothing changes, step counts included, as in
    JAX (``lopt.learned.guard``); taken, it would leave an infinite second moment and steps
    far too small for the rest of the run. The checks cost one pass over the gradients and one
    device-to-host sync per step.
    """

    def __init__(
        self,
        params: Iterable,
        name_or_path: str | os.PathLike = "small",
        *,
        lr_multiplier: float = 1.0,
        compile: bool = False,
        total_steps: int | None = None,
    ):
        if total_steps is not None:
            check_count("total_steps", total_steps)
        self.total_steps = None if total_steps is None else int(total_steps)
        self.config, self._theta_cpu = load(name_or_path)
        cfg, rnn = self.config, self.config.kind == "rnn-mlp"
        reads_horizon = cfg.kind == "fast" or cfg.with_horizon_feature or cfg.distance_decay
        if reads_horizon and self.total_steps is None:
            say_once(
                f"the {cfg.kind!r} learned optimizer reads how far the run has gone, and was not "
                "told the run's length: give it (LearnedOptimizer(..., total_steps=N)) for the "
                "updates it was meta-trained to make"
            )
        self._nominal = cfg.kind != "mlp" or cfg.nominal  # the others add Adam's direction
        self._compiled = None  # the compiled per-tensor update (``compile=True``)
        self._fast_step = fast.compiled_step() if compile else fast.step  # (the "fast" kind)
        if compile and cfg.kind != "fast":
            settings = (cfg.exp_mult, cfg.step_mult, cfg.trust_ratio, cfg.trust_floor)
            per_parameter = cfg.feature_normalization == "parameter"
            self._compiled = compiled_tensor_update(
                cfg.decays, *settings, self._nominal, rnn, per_parameter
            )
        self.source = str(name_or_path)
        self._theta_by_device: dict[torch.device, dict[str, torch.Tensor]] = {}
        self._decays_by_shape: dict = {}
        self._loss_stats: dict | None = None  # statistics of the losses (when read)
        self._distance: dict | None = None  # the distance estimate (with distance scaling)
        super().__init__(params, {"lr_multiplier": check_multiplier(lr_multiplier)})

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            check_multiplier(group["lr_multiplier"])
            for p in group["params"]:
                check_parameter(p)
        except LoptError:
            self.param_groups.pop()
            raise

    @torch.no_grad()
    def step(
        self,
        closure: Callable[[], torch.Tensor] | None = None,
        *,
        loss: torch.Tensor | float | None = None,
        valid_loss: torch.Tensor | float | None = None,
    ):
        """One update of every parameter with a gradient.

        Args:
            closure: re-evaluates the model and returns the loss (optional; one that returns
                ``None``, as PyTorch Lightning's does, leaves the loss to ``loss=``).
            loss: the training loss at the current parameters, unless the closure returns it. Only
                optimizers with loss features read it ("rnn-mlp", and an "mlp" with
                ``with_loss_features``); as 0 when absent, like the JAX version.
            valid_loss: a validation loss for the loss features (default: ``loss``).

        Returns:
            The loss (the closure's value, or ``loss``).
        """
        if closure is not None:
            with torch.enable_grad():
                returned = closure()
            if returned is not None and loss is not None:
                raise LoptError(
                    "the closure returned a loss and loss= was given too: pass the loss either "
                    "through closure or as loss=, not both"
                )
            loss = loss if returned is None else returned
        check_loss(loss, "loss")
        check_loss(valid_loss, "valid_loss")
        active = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or p.numel() == 0:
                    continue
                if p.grad.is_sparse:
                    raise LoptError("LearnedOptimizer does not support sparse gradients")
                active.append((p, group["lr_multiplier"]))
        if not active:
            return loss
        if self.config.kind == "fast":  # finds overflowing squared gradients itself
            self._step_fast(active, loss, valid_loss)
        elif gradients_overflow(self.param_groups, active):
            return loss
        elif self.config.kind == "mlp":
            self._step_mlp(active, loss, valid_loss)
        else:
            self._step_rnn_mlp(active, loss, valid_loss)
        return loss

    # --- state ---

    def _theta(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._theta_by_device:
            self._theta_by_device[device] = {k: v.to(device) for k, v in self._theta_cpu.items()}
        return self._theta_by_device[device]

    # --- the architectures ---

    def _step_fast(self, active: list, loss, valid_loss) -> None:
        """One step of the "fast" optimizer (``lopt.torch.fast``), per device. On one device the
        step itself finds an overflowing squared gradient (``fast.step``'s ``taken``); with
        several, ``gradients_overflow`` does first, so that all of them skip it together."""
        cfg = self.config
        by_device: dict[torch.device, list] = {}
        for p, multiplier in active:
            by_device.setdefault(p.device, []).append((p, multiplier))
        if len(by_device) > 1 and gradients_overflow(self.param_groups, active):
            return
        names = fast.state_names(cfg)
        for device, pairs in by_device.items():
            loss_d = scalar(loss, device)
            valid_d = loss_d if valid_loss is None else scalar(valid_loss, device)
            stats = self._loss_stats or fast.initial_loss_stats(device)
            stats = tuple(
                torch.as_tensor(stats[k], dtype=torch.float32, device=device)
                for k in fast.LOSS_KEYS
            )
            params = [p for p, _ in pairs]
            states = [self.state.get(p) or fast.init_param_state(cfg, p) for p in params]
            counts = fast.step_counts([s["step"] + 1 for s in states], self.total_steps, device)
            updates, stats, taken = self._fast_step(
                cfg, fast.plain_names(self._theta(device)), params, [p.grad for p in params],
                {k: [s[k] for s in states] for k in names}, counts, stats, loss_d, valid_d,
            )  # fmt: skip
            if not bool(taken):  # raises if a gradient holds NaN or inf; nothing has changed
                gradients_overflow(self.param_groups, active)
                return
            self._loss_stats = dict(zip(fast.LOSS_KEYS, stats, strict=True))
            for (p, multiplier), s, update in zip(pairs, states, updates, strict=True):
                self.state[p] = s
                s["step"] += 1
                network_steps.apply_update(p, update, multiplier)  # one hook for every kind

    # --- saving and restoring ---

    def state_dict(self) -> dict:
        """As ``torch.optim.Optimizer.state_dict``, plus ``"lopt"``: the architecture and, for
        optimizers with loss features or distance scaling, their run statistics."""
        state_dict = super().state_dict()
        state_dict["lopt"] = {
            "architecture": self.config.kind,
            "loss_stats": _copy(self._loss_stats),
            "distance": _copy(self._distance),
        }
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a ``state_dict``; the run then continues exactly as the saved one would.

        Optimizer state stays float32 whatever the parameters' dtype (torch's default loader
        would cast it to the parameter dtype).
        """
        state_dict = dict(state_dict)
        extra = state_dict.pop("lopt", None)
        if extra is None or extra.get("architecture") != self.config.kind:
            found = None if extra is None else extra.get("architecture")
            raise LoptError(
                f"this state_dict is not from a {self.config.kind!r} LearnedOptimizer "
                f"(its architecture: {found!r})"
            )
        check_state_shapes(self.param_groups, state_dict, len(getattr(self.config, "decays", ())))
        super().load_state_dict(state_dict)
        saved_ids = itertools.chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = itertools.chain.from_iterable(g["params"] for g in self.param_groups)
        for saved_id, p in zip(saved_ids, params, strict=True):
            for key, value in state_dict["state"].get(saved_id, {}).items():
                if torch.is_tensor(value):
                    self.state[p][key] = value.to(device=p.device, dtype=torch.float32)
        self._loss_stats = _copy(extra.get("loss_stats"))
        self._distance = _copy(extra.get("distance"))


def _copy(stats: dict | None) -> dict | None:
    """A copy of run statistics (scalar tensors cloned), or ``None``."""
    if stats is None:
        return None
    return {k: v.clone() if torch.is_tensor(v) else v for k, v in stats.items()}
