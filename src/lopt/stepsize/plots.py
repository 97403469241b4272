"""Figures for the step-size laboratory (matplotlib, Agg backend, PNG).

Plots the experiments of Wang, Yuan, Wu & Ge (ICML 2021, arXiv 2006.16495) from the metric
dicts returned by :mod:`lopt.stepsize.experiments`.
"""

from __future__ import annotations

import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LN10 = np.log(10.0)
FAILED = 1e2  # where a failed (inf / NaN / 0) result is drawn on relative-error axes


def _growth(path: pathlib.Path, g: dict[str, Any]) -> None:
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2))
    ts = g["ts"]
    for i, eta in enumerate(g["etas"]):
        (line,) = ax0.plot(
            ts,
            g["naive_log_abs"][i] / LN10,
            label=f"η={eta:g}: d ln|F′|/dt {g['measured_rate'][i]:+.3f} "
            f"(pred. {g['predicted_rate'][i]:+.3f})",
        )
        for name, marker in (("float64", "o"), ("float32", "x")):
            vals = np.abs(g[f"naive_autodiff_{name}"][i])
            ok = np.isfinite(vals) & (vals > 0)
            ax0.scatter(
                g["autodiff_ts"][ok],
                np.log10(vals[ok]),
                marker=marker,
                color=line.get_color(),
                s=28,
                label=f"autodiff {name}" if i == 0 else None,
            )
        ax1.plot(ts, np.abs(g["log_grad"][i]), label=f"η={eta:g}")
    ax0.axhline(np.log10(np.finfo(np.float32).max), color="gray", ls=":", lw=1)
    ax0.axhline(np.log10(np.finfo(np.float32).tiny), color="gray", ls=":", lw=1)
    ax0.set(
        xlabel="unroll length t",
        ylabel="log10 |F'(η)|",
        title=f"naive objective f(w_t)   (2/L = {g['two_over_L']:.2g}; dotted: float32 range)",
    )
    ax0.legend(fontsize=7)
    ax1.set(xlabel="unroll length t", ylabel="|F'(η)|", title="log objective (1/t)·log f(w_t)")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _precision(path: pathlib.Path, p: dict[str, Any]) -> None:
    etas = p["etas"]
    fig, axes = plt.subplots(1, len(etas), figsize=(5.5 * len(etas), 4.2), squeeze=False)
    styles = {
        "autodiff_float32": ("x-", "autodiff float32"),
        "autodiff_float64": ("o-", "autodiff float64"),
        "stable_float32": ("s--", "stable float32"),
        "stable_float64": ("^--", "stable float64"),
    }
    for i, (ax, eta) in enumerate(zip(axes[0], etas, strict=True)):
        for name, (style, label) in styles.items():
            vals, rel = p[name][i], p[f"{name}_relerr"][i]
            failed = ~np.isfinite(vals) | (vals == 0) | ~np.isfinite(rel)
            shown = np.where(failed, FAILED, np.maximum(rel, 1e-17))
            ax.plot(p["ts"], shown, style, ms=4, label=label)
        ax.axhline(FAILED, color="gray", ls=":", lw=1)
        ax.text(p["ts"][0], FAILED * 1.6, "inf / NaN / 0", fontsize=8, color="gray")
        ax.set(
            xscale="log",
            yscale="log",
            ylim=(1e-17, FAILED * 10),
            xlabel="unroll length t",
            ylabel="relative error vs 60-digit reference",
            title=f"log-objective meta-gradient, η = {eta:g}",
        )
        ax.legend(fontsize=8, loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _metagd(path: pathlib.Path, md: dict[str, Any]) -> None:
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = {
        "log_stable": "log objective, stable float64",
        "log_autodiff_float32": "log objective, autodiff float32",
        "naive_stable": "naive objective, stable float64",
    }
    styles = {"log_stable": "-", "log_autodiff_float32": "--", "naive_stable": "-"}
    for name, label in labels.items():
        r = md[name]
        k = np.arange(len(r["etas"]))
        ax0.plot(k, r["etas"], styles[name], label=label)
        ax1.plot(k, np.maximum(r["gap"], 1e-16), styles[name], label=label)
    ax0.axhline(md["eta_star"], color="k", ls=":", lw=1, label=f"η* = {md['eta_star']:.4g}")
    ax0.set(xlabel="meta-step k", ylabel="η_k", title="meta-gradient descent, step 0.01/√k")
    ax0.legend(fontsize=8)
    ax1.set(
        yscale="log",
        xlabel="meta-step k",
        ylabel="F_log(η_k) − F_log(η*)",
        title="log-objective gap (floored at 1e-16)",
    )
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _least_squares(path: pathlib.Path, ls: dict[Any, dict[str, Any]]) -> None:
    ns = list(ls)
    fig, axes = plt.subplots(2, len(ns), figsize=(4.6 * len(ns), 8), squeeze=False)
    for j, n in enumerate(ns):
        c = ls[n]
        sig = np.asarray(c["sigmas"])
        ax = axes[0, j]
        for key, label, fmt in (
            ("test_tbt", "train-by-train", "o-"),
            ("test_tbv", "train-by-val", "s-"),
        ):
            err = np.asarray(c[key])
            ax.errorbar(sig, err.mean(1), yerr=err.std(1), fmt=fmt, capsize=3, label=label)
        ax.plot(sig, np.min(c["test_curve_full"], 1), "k:", label=f"best η, GD on {n}")
        ax.plot(sig, np.min(c["test_curve_half"], 1), "k--", lw=1, label=f"best η, GD on {n // 2}")
        ax.set(
            ylim=(0, None),
            xlabel="noise σ",
            ylabel="test ‖w_t − w*‖²",
            title=f"n = {n}: TbT {n} vs TbV {n // 2}+{n // 2}",
        )
        ax.legend(fontsize=7)
        ax = axes[1, j]
        i = len(sig) - 1
        grid = np.asarray(c["eta_grid"])
        ax.plot(grid, c["test_curve_full"][i], label=f"test error, GD on {n}")
        ax.plot(grid, c["test_curve_half"][i], label=f"test error, GD on {n // 2}")
        ax.axvline(c["eta_tbt"][i], color="C0", ls=":", label="η by train-by-train")
        ax.axvline(c["eta_tbv"][i], color="C1", ls=":", label="η by train-by-val")
        ax.set(
            xscale="log",
            yscale="log",
            ylim=(0.5 * min(np.min(c["test_curve_full"][i]), np.min(c["test_curve_half"][i])), 30),
            xlabel="η",
            ylabel="mean test ‖w_t − w*‖²",
            title=f"σ = {sig[i]:g}: test error vs η",
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_all(out_dir: pathlib.Path, metrics: dict[str, Any]) -> list[pathlib.Path]:
    """Write ``growth.png``, ``precision.png``, ``metagd.png``, ``least_squares.png``."""
    out_dir = pathlib.Path(out_dir)
    paths = [out_dir / f"{name}.png" for name in ("growth", "precision", "metagd", "least_squares")]
    _growth(paths[0], metrics["growth"])
    _precision(paths[1], metrics["precision"])
    _metagd(paths[2], metrics["meta_descent"])
    _least_squares(paths[3], metrics["least_squares"])
    return paths
