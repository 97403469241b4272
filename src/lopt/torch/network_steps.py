"""The ``mlp`` and ``rnn-mlp`` steps of ``LearnedOptimizer`` (``lopt.torch.optimizer``).

These architectures keep per-parameter state (momenta and second moments at several decays,
for ``rnn-mlp`` an LSTM state per tensor) and run statistics (the losses, the distance
estimate) on the optimizer; ``NetworkSteps`` holds their step, tensor by tensor, with the
network arithmetic of ``lopt.torch.networks`` (or, with ``compile=True``, the compiled update
of ``lopt.torch.compiled``). The ``fast`` architecture's step is ``lopt.torch.fast``.
"""

from __future__ import annotations

import functools

import torch

from lopt.specs.constants import DISTANCE_D0, LOSS_FEATURE_NAMES, LSTM_INPUT_CLIP
from lopt.specs.mlp import NOMINAL_B1, NOMINAL_B2
from lopt.specs.rnn_mlp import GRAD_RMS_DECAY
from lopt.torch import networks as nets


class NetworkSteps:
    """The ``mlp`` and ``rnn-mlp`` steps, mixed into ``LearnedOptimizer`` (whose attributes
    they read: ``config``, ``state``, ``total_steps``, ``_theta``, ``_compiled``, ``_nominal``,
    ``_decays_by_shape``, ``_loss_stats``, ``_distance``)."""

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

    def _loss_features(self, device: torch.device, loss, valid_loss) -> torch.Tensor:
        """Fold this step's losses into the loss statistics; the loss features, ``(3,)``."""
        loss = scalar(loss, device)
        valid_loss = loss if valid_loss is None else scalar(valid_loss, device)
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
            apply_update(p, update, multiplier)

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
            apply_update(p, update, multiplier)
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


def apply_update(p: torch.Tensor, update: torch.Tensor, multiplier: float) -> None:
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


def scalar(value, device: torch.device) -> torch.Tensor:
    """A loss (tensor or number; ``None`` reads as 0) as a float32 scalar on ``device``."""
    if value is None:
        return torch.zeros((), dtype=torch.float32, device=device)
    value = torch.as_tensor(value).detach()
    return value.to(device=device, dtype=torch.float32).reshape(())


def _initial_loss_stats(device: torch.device) -> dict:
    zero = torch.zeros((), dtype=torch.float32, device=device)
    return {"mean": zero, "var": zero, "valid": zero, "initial": zero, "count": 0}
