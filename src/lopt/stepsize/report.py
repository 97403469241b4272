"""``lopt stepsize``: run the step-size laboratory and write figures, metrics and a report.

Reproduces the quadratic and least-squares experiments of Wang, Yuan, Wu & Ge, "Guarantees for
Tuning the Step Size using a Learning-to-Learn Approach" (ICML 2021, arXiv 2006.16495). The
output directory receives ``config.json``, ``metrics.json``, ``report.md`` and four PNGs
(``growth.png``, ``precision.png``, ``metagd.png``, ``least_squares.png``), plus, unless skipped,
the neural train-by-train vs train-by-validation experiment (``neural.json``, ``neural.md``,
``neural.png``; see :mod:`lopt.stepsize.neural`).

Run it as ``python -m lopt.stepsize.report --out runs/stepsize [--quick] [--no-neural]`` (or
``lopt stepsize``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from rich.console import Console

from lopt.stepsize import experiments as ex
from lopt.stepsize import neural as nn
from lopt.stepsize import plots
from lopt.stepsize.quadratic import make_quadratic
from lopt.storage.files import write_atomically


@dataclasses.dataclass(frozen=True)
class Config:
    """Every knob of the laboratory (defaults: the full run; see :func:`quick_config`)."""

    seed: int = 0
    # Quadratic: d eigenvalues evenly spaced in [alpha, L], w0 uniform on the unit sphere.
    d: int = 20
    L: float = 5.0
    alpha: float = 0.5
    growth_etas: tuple[float, ...] = (0.1, 0.3, 0.45, 0.6)
    growth_t_max: int = 1000
    growth_fit_from: int = 200
    growth_autodiff_ts: tuple[int, ...] = (10, 25, 50, 100, 200, 400, 800)
    precision_etas: tuple[float, ...] = (0.1, 0.6)
    precision_t_max: int = 20000
    precision_num_t: int = 22
    precision_rtol: float = 1e-3
    meta_t: int = 80
    meta_eta0: float = 0.1
    meta_steps: int = 300
    meta_step_scale: float = 0.01
    meta_rel_tol: float = 0.01
    spectra: tuple[tuple[float, float], ...] = ((5.0, 0.5), (10.0, 1.0), (20.0, 1.0), (1.0, 0.1))
    # Least squares.
    ls_d: int = 1000
    ls_sample_counts: tuple[int, ...] = (500, 2000, 8000)
    ls_sigmas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    ls_t: int = 100
    ls_num_meta: int = 10
    ls_num_test: int = 10
    ls_eta_min: float = 1e-5
    ls_eta_max: float = 1.0
    ls_grid_size: int = 161


def quick_config() -> Config:
    """A smoke-test configuration that runs in a few seconds."""
    return dataclasses.replace(
        Config(),
        growth_t_max=300,
        growth_fit_from=100,
        growth_autodiff_ts=(10, 50, 100, 200),
        precision_t_max=2000,
        precision_num_t=8,
        spectra=((5.0, 0.5), (10.0, 1.0)),
        ls_d=100,
        ls_sample_counts=(50, 400),
        ls_num_meta=4,
        ls_num_test=4,
        ls_grid_size=101,
    )


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "—" if x is None else format(x, spec)


def _markdown(
    cfg: Config, m: dict[str, Any], seconds: float, neural_cfg: nn.NeuralConfig | None = None
) -> str:
    g, p, md = m["growth"], m["precision"], m["meta_descent"]
    lines = [
        "# Step-size learning-to-learn laboratory",
        "",
        "Wang, Yuan, Wu & Ge, ICML 2021 (arXiv 2006.16495). "
        f"Quadratic: d = {cfg.d}, eigenvalues evenly spaced in [{cfg.alpha}, {cfg.L}], "
        f"w0 uniform on the unit sphere (seed {cfg.seed}). Wall time {seconds:.0f} s.",
        "",
        "## 1. Naive meta-gradient vanishes / explodes; log meta-gradient stays bounded",
        "",
        f"2/L = {g['two_over_L']:.3g}. Slope of log|F'_naive| against t, fitted on "
        f"t in [{cfg.growth_fit_from}, {cfg.growth_t_max}] (stable method, float64):",
        "",
        "| eta | predicted 2·log max\\|1-eta·lam\\| | measured slope "
        "| measured slope of log(\\|F'\\|/t) |",
        "|---|---|---|---|",
    ]
    for e, pr, me, md2 in zip(
        g["etas"],
        g["predicted_rate"],
        g["measured_rate"],
        g["measured_rate_without_t"],
        strict=True,
    ):
        lines.append(f"| {e:g} | {pr:+.5f} | {me:+.5f} | {md2:+.5f} |")
    lines += [
        "",
        f"Largest |F'_log| over all eta and t: {g['log_grad_max_abs']:.4g}.",
        "",
        "![growth](growth.png)",
        "",
        "## 2. Autodiff through the unroll vs the stable closed form (log objective)",
        "",
        f"Reference: forward-mode dual numbers through the GD recursion in 60-digit decimal. "
        f"'First failure' is the first t (of {len(p['ts'])} values up to {cfg.precision_t_max}) "
        f"where the result is inf/NaN/0 or off by more than rtol = {cfg.precision_rtol:g}.",
        "",
        "| method | " + " | ".join(f"first failure, eta = {e:g}" for e in p["etas"]) + " | "
        "max rel. error (all t) |",
        "|---|" + "---|" * (len(p["etas"]) + 1),
    ]
    for name in ("autodiff_float32", "autodiff_float64", "stable_float32", "stable_float64"):
        fails = " | ".join(
            _fmt(f, "d") if f is not None else "none" for f in p[f"{name}_first_failure"]
        )
        lines.append(f"| {name} | {fails} | {p[f'{name}_max_relerr']:.3g} |")
    lines += [
        "",
        "![precision](precision.png)",
        "",
        "## 3. Meta-gradient descent on eta",
        "",
        f"t = {cfg.meta_t}, eta0 = {cfg.meta_eta0}, step {cfg.meta_step_scale:g}/sqrt(k), "
        f"{cfg.meta_steps} meta-steps, negative eta reset to 0. eta* = {md['eta_star']:.6g} "
        "(grid + bisection on the stable meta-gradient). Converged at step k means "
        f"|eta_j - eta*| <= {cfg.meta_rel_tol:g}·eta* for every j >= k.",
        "",
        "| run | final eta | final F_log gap | converged at step |",
        "|---|---|---|---|",
    ]
    for name in ("log_stable", "log_autodiff_float32", "naive_stable"):
        r = md[name]
        lines.append(
            f"| {name} | {r['final_eta']:.6g} | {r['final_gap']:.3g} | "
            f"{_fmt(r['steps_to_converge'], 'd') if r['steps_to_converge'] is not None else 'no'} |"
        )
    lines += [
        "",
        "Log objective, stable meta-gradient, other linear spectra (same seed, t, schedule):",
        "",
        "| L | alpha | eta* | final eta | final gap | converged at step |",
        "|---|---|---|---|---|---|",
    ]
    for r in m["spectra"]:
        conv = r["steps_to_converge"]
        lines.append(
            f"| {r['L']:g} | {r['alpha']:g} | {r['eta_star']:.5g} | {r['final_eta']:.5g} | "
            f"{r['final_gap']:.3g} | {conv if conv is not None else 'no'} |"
        )
    lines += [
        "",
        "![metagd](metagd.png)",
        "",
        "## 4. Train-by-train vs train-by-validation (noisy least squares)",
        "",
        f"d = {cfg.ls_d}, GD for t = {cfg.ls_t} steps from 0; eta minimizes the meta-objective "
        f"averaged over {cfg.ls_num_meta} problems on {cfg.ls_grid_size} log-spaced values in "
        f"[{cfg.ls_eta_min:g}, {cfg.ls_eta_max:g}]; test error ||w_t - w*||^2 (mean ± std) on "
        f"{cfg.ls_num_test} new problems. TbT: n samples train; TbV: n/2 train + n/2 validate.",
        "",
        "| n | sigma | eta TbT | eta TbV | test TbT | test TbV | best-eta GD on n | "
        "best-eta GD on n/2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, c in m["least_squares"].items():
        for i, s in enumerate(c["sigmas"]):
            tbt, tbv = np.asarray(c["test_tbt"][i]), np.asarray(c["test_tbv"][i])
            lines.append(
                f"| {n} | {s:g} | {c['eta_tbt'][i]:.4g} | {c['eta_tbv'][i]:.4g} | "
                f"{tbt.mean():.3f} ± {tbt.std():.3f} | {tbv.mean():.3f} ± {tbv.std():.3f} | "
                f"{np.min(c['test_curve_full'][i]):.3f} | {np.min(c['test_curve_half'][i]):.3f} |"
            )
    lines += ["", "![least squares](least_squares.png)", ""]
    if neural_cfg is not None and "neural" in m:
        lines += [
            "## 5. Train-by-train vs train-by-validation with a neural learned optimizer",
            "",
            nn.markdown(neural_cfg, m["neural"]),
            "![neural](neural.png)",
            "",
        ]
    return "\n".join(lines)


def run(
    out_dir: pathlib.Path,
    quick: bool = False,
    config: Config | None = None,
    neural: bool = True,
    neural_config: nn.NeuralConfig | None = None,
) -> dict:
    """Run all experiments, write PNGs, ``report.md``, ``metrics.json``; return the metrics.

    ``metrics.json`` is rewritten as each experiment finishes, so an interrupted run keeps them.

    ``neural=False`` skips the neural-network experiment (:func:`lopt.stepsize.neural.run_neural`,
    a few minutes at full size); ``neural_config`` overrides its configuration.
    """
    cfg = config or (quick_config() if quick else Config())
    neural_cfg = None
    if neural:
        neural_cfg = neural_config or (nn.quick_config() if quick else nn.NeuralConfig())
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    console = Console()
    start = time.perf_counter()
    key = jax.random.key(cfg.seed)
    problem = make_quadratic(cfg.d, cfg.L, cfg.alpha, key=key)
    metrics: dict[str, Any] = {}

    def stage(name: str, fn):
        t0 = time.perf_counter()
        with console.status(f"[bold]stepsize[/]: {name} ..."):
            result = fn()
        console.log(f"{name}: done in {time.perf_counter() - t0:.1f} s")
        return result

    def save() -> None:  # after each experiment: an interrupted run keeps the finished ones
        write_atomically(out_dir / "metrics.json", json.dumps(ex.to_json(metrics)).encode())

    def experiment(field: str, name: str, fn) -> None:
        metrics[field] = stage(name, fn)
        save()

    ts = np.arange(1, cfg.growth_t_max + 1)
    experiment(
        "growth",
        "meta-gradient growth",
        lambda: ex.growth(
            problem, cfg.growth_etas, ts, cfg.growth_fit_from, cfg.growth_autodiff_ts
        ),
    )
    p_ts = np.unique(np.geomspace(1, cfg.precision_t_max, cfg.precision_num_t).astype(int))
    experiment(
        "precision",
        "autodiff vs stable precision",
        lambda: ex.precision(problem, cfg.precision_etas, p_ts, cfg.precision_rtol),
    )
    experiment(
        "meta_descent",
        "meta-gradient descent",
        lambda: ex.meta_descent(
            problem,
            cfg.meta_t,
            cfg.meta_eta0,
            cfg.meta_steps,
            cfg.meta_step_scale,
            cfg.meta_rel_tol,
        ),
    )
    experiment(
        "spectra",
        "meta-gradient descent on other spectra",
        lambda: ex.meta_descent_spectra(
            cfg.spectra,
            key=key,
            d=cfg.d,
            t=cfg.meta_t,
            eta0=cfg.meta_eta0,
            num_steps=cfg.meta_steps,
            step_scale=cfg.meta_step_scale,
            rel_tol=cfg.meta_rel_tol,
        ),
    )
    grid = np.geomspace(cfg.ls_eta_min, cfg.ls_eta_max, cfg.ls_grid_size)
    experiment(
        "least_squares",
        "train-by-train vs train-by-validation",
        lambda: {
            n: c._asdict()
            for n, c in ex.least_squares(
                jax.random.fold_in(key, 1),
                d=cfg.ls_d,
                sample_counts=cfg.ls_sample_counts,
                sigmas=cfg.ls_sigmas,
                t=cfg.ls_t,
                eta_grid=grid,
                num_meta_problems=cfg.ls_num_meta,
                num_test_problems=cfg.ls_num_test,
            ).items()
        },
    )
    stage("figures", lambda: plots.write_all(out_dir, metrics))
    if neural_cfg is not None:
        t0 = time.perf_counter()
        metrics["neural"] = nn.run_neural(out_dir, config=neural_cfg, console=console)
        save()
        console.log(
            f"neural train-by-train vs train-by-validation: done in "
            f"{time.perf_counter() - t0:.1f} s"
        )
    seconds = time.perf_counter() - start
    (out_dir / "report.md").write_text(_markdown(cfg, metrics, seconds, neural_cfg))
    extra = " (+ neural.json/.md/.png)" if neural_cfg is not None else ""
    console.log(f"wrote {out_dir}/report.md, metrics.json and 4 PNGs{extra} in {seconds:.0f} s")
    return ex.to_json(metrics)


def main(argv: Sequence[str] | None = None) -> dict:
    """Command-line entry point: ``python -m lopt.stepsize.report --out DIR [--quick]``."""
    parser = argparse.ArgumentParser(prog="lopt stepsize", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output directory")
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test configuration")
    parser.add_argument(
        "--no-neural",
        action="store_true",
        help="skip the neural train-by-train vs train-by-validation experiment",
    )
    args = parser.parse_args(argv)
    return run(args.out, quick=args.quick, neural=not args.no_neural)


if __name__ == "__main__":
    main()
