"""``LearnedOptimizer``: a saved learned optimizer as a ``torch.optim.Optimizer``.

The update is computed in PyTorch (``lopt.torch.fast`` from the shared specification;
``lopt.torch.networks`` for the older architectures), in float32, and equals the JAX
optimizer's (``lopt.learned``) to float32 rounding. The
parameters of all param groups, in order, play the role of the JAX pytree's leaves.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterable

import torch

from lopt.errors import LoptError, check_count, say_once
from lopt.specs.constants import DISTANCE_D0, LOSS_FEATURE_NAMES, LSTM_INPUT_CLIP
from lopt.specs.mlp import NOMINAL_B1, NOMINAL_B2
from lopt.specs.rnn_mlp import GRAD_RMS_DECAY
from lopt.torch import fast
from lopt.torch import networks as nets
from lopt.torch.checks import (
    check_loss,
    check_multiplier,
    check_parameter,
    check_state_shapes,
    gradients_overflow,
)
from lopt.torch.compiled import compiled_tensor_update
from lopt.torch.files import load


class LearnedOptimizer(torch.optim.Optimizer):
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

    def _decays(self, device: torch.device, ndim: int):
        key = (device, ndim)
        if key not in self._decays_by_shape:
            self._decays_by_shape[key] = nets.decay_tensors(self.config.decays, ndim, device)
        return self._decays_by_shape[key]

    def _param_state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            acc_shape = (len(self.config.decays), *p.shape)
            zeros = lambda shape: torch.zeros(shape, dtype=torch.float32, device=p.device)
            state["step"] = 0
            state["momentum"] = zeros(acc_shape)
            state["second_moment"] = zeros(acc_shape)
            if self.config.kind == "rnn-mlp":
                state["h"] = zeros((self.config.lstm_hidden,))
                state["c"] = zeros((self.config.lstm_hidden,))
                state["pooled"] = zeros((self.config.mlp_hidden[-1],))
                state["grad_rms"] = zeros(())
        return state

    def _accumulate(self, p: torch.Tensor, g: torch.Tensor, state: dict) -> None:
        b, one_minus_b = self._decays(p.device, p.dim())
        nets.update_accumulators(state["momentum"], state["second_moment"], g, b, one_minus_b)
        state["step"] += 1

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
            loss_d = _scalar(loss, device)
            valid_d = loss_d if valid_loss is None else _scalar(valid_loss, device)
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
                _apply(p, update, multiplier)

    def _loss_features(self, device: torch.device, loss, valid_loss) -> torch.Tensor:
        """Fold this step's losses into the loss statistics; the loss features, ``(3,)``."""
        loss = _scalar(loss, device)
        valid_loss = loss if valid_loss is None else _scalar(valid_loss, device)
        if self._loss_stats is None:
            self._loss_stats = _initial_loss_stats(device)
        stats = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self._loss_stats.items()}
        self._loss_stats = stats = nets.update_loss_stats(stats, loss, valid_loss)
        return nets.loss_features(stats, loss)

    def _step_mlp(self, active: list, loss, valid_loss) -> None:
        cfg = self.config
        constants = {}  # per (step count, device): time, then any loss and horizon features
        losses = None
        if cfg.with_loss_features:
            losses = self._loss_features(active[0][0].device, loss, valid_loss)
        log_scale = self._log_distance_scale(active)
        for p, multiplier in active:
            theta = self._theta(p.device)
            state = self._param_state(p)
            g = p.grad.to(torch.float32)
            self._accumulate(p, g, state)
            count = state["step"]
            log_lr = theta["['log_lr']"]
            if log_scale is not None:
                log_lr = log_lr + log_scale.to(p.device)
            if (count, p.device) not in constants:
                shared = [nets.time_features(count, cfg.timescales, p.device)]
                if losses is not None:
                    shared.append(losses.to(p.device))
                if cfg.with_horizon_feature:
                    horizon = nets.horizon_features(
                        count, self.total_steps, cfg.horizon_thresholds, p.device
                    )
                    shared.append(horizon)
                constants[count, p.device] = torch.cat(shared)
            update, _ = self._tensor_update(
                p.to(torch.float32), g, state, constants[count, p.device], log_lr
            )
            _apply(p, update, multiplier)

    def _log_distance_scale(self, active: list) -> torch.Tensor | None:
        """Fold this step's gradients into the distance estimate (at the parameters before
        the step, as the JAX optimizer does); ``log`` of the step multiplier (``None`` without
        distance scaling)."""
        cfg, device = self.config, active[0][0].device
        if cfg.distance_power <= 0:
            return None
        if self._distance is None:
            zero = torch.zeros((), dtype=torch.float32, device=device)
            d0 = torch.full((), DISTANCE_D0, dtype=torch.float32, device=device)
            self._distance = {"numerator": zero, "d": d0, "count": 0}
        tensors = []
        for p, _ in active:
            state = self._param_state(p)
            p32 = p.detach().to(torch.float32)
            if "initial" not in state:
                state["initial"] = p32.clone()
                state["grad_sum"] = torch.zeros_like(p32)
            tensors.append((p.grad.to(torch.float32), p32, state["initial"], state["grad_sum"]))
        stats = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self._distance.items()}
        self._distance = nets.update_distance(stats, tensors, device)
        scale = nets.log_distance_scale(
            self._distance["d"], cfg.distance_power, cfg.distance_ref, cfg.distance_max
        )
        if cfg.distance_decay:  # falls linearly to 0 over the run (lopt.learned.distance)
            fraction = nets.run_fraction(self._distance["count"], self.total_steps, device)
            scale = scale * (1.0 - fraction)
        return scale

    def _step_rnn_mlp(self, active: list, loss, valid_loss) -> None:
        cfg = self.config
        device = active[0][0].device  # the per-tensor LSTM runs here
        theta = self._theta(device)
        clip = cfg.clip_mult * torch.exp(theta["['log_clip']"])
        log_scale = self._log_distance_scale(active)  # gradients before the learned clipping

        states, grads = [], []
        for p, _ in active:  # learned dynamic gradient clipping, then the accumulators
            state = self._param_state(p)
            g = p.grad.to(torch.float32)
            g_rms = nets.rms(g)
            if state["step"] > 0:
                g_rms = GRAD_RMS_DECAY * state["grad_rms"] + (1 - GRAD_RMS_DECAY) * g_rms
            state["grad_rms"] = g_rms
            limit = (clip.to(p.device) * g_rms).to(torch.float32)
            g = torch.clamp(g, -limit, limit)
            self._accumulate(p, g, state)
            states.append(state)
            grads.append(g)

        losses = self._loss_features(device, loss, valid_loss)

        # Per-tensor LSTM over the tensors taking part in this step.
        nom = cfg.decays.index(NOMINAL_B1)  # the momentum of the nominal direction
        counts = [s["step"] for s in states]
        times = {c: nets.time_features(c, cfg.timescales, device) for c in set(counts)}
        horizons = {  # empty without the horizon feature
            c: nets.horizon_features(c, self.total_steps, cfg.horizon_thresholds, device)
            if cfg.with_horizon_feature
            else torch.zeros((0,), dtype=torch.float32, device=device)
            for c in set(counts)
        }
        params = [p.to(torch.float32) for p, _ in active]
        dynamic = torch.stack(
            [
                torch.stack([nets.rms(g), nets.rms(p), nets.rms(s["momentum"][nom])]).to(device)
                for g, p, s in zip(grads, params, states, strict=True)
            ]
        ).log()
        static = torch.tensor(
            [nets.tensor_static_features(p.shape) for p in params],
            dtype=torch.float32,
            device=device,
        )
        n = len(active)
        h_prev = torch.stack([s["h"].to(device) for s in states])
        c_prev = torch.stack([s["c"].to(device) for s in states])
        deepsets = torch.mean(nets.dense(theta, "deepsets", h_prev), dim=0)
        x = torch.cat(
            [
                dynamic,
                static,
                torch.stack([times[c] for c in counts]),
                losses.expand(n, len(LOSS_FEATURE_NAMES)),
                torch.stack([horizons[c] for c in counts]),
                torch.stack([s["pooled"].to(device) for s in states]),
                deepsets.expand(n, cfg.deepsets),
            ],
            dim=1,
        )
        x = torch.clamp(x, -LSTM_INPUT_CLIP, LSTM_INPUT_CLIP)
        h, c = nets.lstm_cell(theta, x, h_prev, c_prev)
        to_mlp = nets.dense(theta, "to_mlp", h)  # (n, to_mlp)
        tensor_log_lr = nets.dense(theta, "lr_head", h)[:, 0]  # (n,)

        # Per-parameter MLP, the run's and the tensor's inputs folded into its bias.
        mlp_losses = [losses] if cfg.mlp_loss_features else []
        for i, ((p, multiplier), g, state) in enumerate(zip(active, grads, states, strict=True)):
            count = state["step"]
            run = [times[count], *mlp_losses, horizons[count]]
            constants = torch.cat([*run, to_mlp[i]]).to(p.device)
            log_lr = self._theta(p.device)["['log_lr']"] + tensor_log_lr[i].to(p.device)
            if log_scale is not None:
                log_lr = log_lr + log_scale.to(p.device)
            update, pooled = self._tensor_update(params[i], g, state, constants, log_lr)
            _apply(p, update, multiplier)
            state["h"], state["c"] = h[i].clone().to(p.device), c[i].clone().to(p.device)
            state["pooled"] = pooled.to(p.device)

    def _tensor_update(self, p32, g, state: dict, constants, log_lr):
        """One tensor's update, ``(numel,)``, from its updated accumulators: the per-parameter
        MLP (``constants`` folded into its first bias) gives ``d, m``, and the update is
        ``−λ₂·exp(λ₁·m + log_lr)·(nominal + d)`` within the trust region. Also returns the
        last hidden layer's mean over the tensor (read by "rnn-mlp")."""
        cfg = self.config
        layers = nets.mlp_layers(self._theta(p32.device))
        m, v, count = state["momentum"], state["second_moment"], state["step"]
        if self._compiled is not None:
            # Flat, and not views (detached): a view's base shape would be compiled in.
            flat = lambda x, rows=(): x.reshape(*rows, -1).detach()
            k = (len(cfg.decays),)
            return self._compiled(
                flat(p32),
                flat(g),
                flat(m, k),
                flat(v, k),
                layers,
                constants,
                log_lr,
                _nominal_bias_corrections(count, p32.device),
            )
        if cfg.feature_normalization == "parameter":
            features = nets.per_parameter_features(g, m, v, count, cfg.decays)
        else:
            features = nets.param_features(p32, g, m, v)
        direction, magnitude, pooled = nets.per_param_mlp(layers, features, constants)
        if self._nominal:
            direction.add_(nets.nominal_direction(m, v, count, cfg.decays).reshape(-1))
        # −λ₂·exp(λ₁·m + log_lr)·d, in place on the network's output rows
        update = magnitude.mul_(cfg.exp_mult).add_(log_lr).exp_()
        update = update.mul_(-cfg.step_mult).mul_(direction)
        return nets.trust_region(update, p32, cfg.trust_ratio, cfg.trust_floor), pooled

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


def _apply(p: torch.Tensor, update: torch.Tensor, multiplier: float) -> None:
    """``p += multiplier · update`` (``update`` flat float32, cast to ``p``'s dtype first)."""
    update = update.reshape(p.shape).to(p.dtype)
    if multiplier == 1.0:
        p.add_(update)
    else:
        p.add_(update, alpha=multiplier)


@functools.lru_cache(maxsize=16)
def _nominal_bias_corrections(count: int, device: torch.device) -> torch.Tensor:
    """``1 − β**count`` at the nominal decays, ``(2,)`` float32 (shared by a step's tensors;
    read, never written)."""
    corrections = [nets.bias_correction(b, count) for b in (NOMINAL_B1, NOMINAL_B2)]
    return torch.tensor(corrections, dtype=torch.float32, device=device)


def _scalar(value, device: torch.device) -> torch.Tensor:
    """A loss (tensor or number; ``None`` reads as 0) as a float32 scalar on ``device``."""
    if value is None:
        return torch.zeros((), dtype=torch.float32, device=device)
    value = torch.as_tensor(value).detach()
    return value.to(device=device, dtype=torch.float32).reshape(())


def _initial_loss_stats(device: torch.device) -> dict:
    zero = torch.zeros((), dtype=torch.float32, device=device)
    return {"mean": zero, "var": zero, "valid": zero, "initial": zero, "count": 0}
