"""Speed of ``LearnedOptimizer.step`` ÷ ``torch.optim.Adam.step``, measured in one run.

    python -m lopt.torch.bench [--quick] [--threads 1] [--device cpu]

Models are two square linear layers (weights and biases) of about 10k, 100k and 1M parameters,
as in ``lopt.bench.learned``; the optimizers are the shipped architectures (read from the
shipped files: "small" is "mlp" with hidden [8], "rnn-mlp" has mlp_hidden [8, 8], both with the
trust region) with random weights, so nothing needs to be trained. Each runs eagerly and with
``compile=True`` (``lopt.torch.compiled``; compilation happens in the warm-up step, untimed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import pathlib
import tempfile
import time

import torch
from safetensors.torch import save as save_safetensors

from lopt.pretrained import META_TRAINED, shipped_architecture
from lopt.storage.files import stem_file
from lopt.torch.networks import build_config
from lopt.torch.optimizer import LearnedOptimizer

# The default optimizers' architectures as shipped (``self-trained`` is a ``small``-sized mlp).
ARCHITECTURES = {name: shipped_architecture(name) for name in META_TRAINED}
SIZES = (10_000, 100_000, 1_000_000)


def write_random_optimizer(stem: pathlib.Path, architecture: dict, seed: int = 0) -> None:
    """Save an optimizer of ``architecture`` with N(0, 0.1²) weights (format of lopt.learned)."""
    config = build_config(architecture)
    generator = torch.Generator().manual_seed(seed)
    theta = {
        name: 0.1 * torch.randn(shape, generator=generator)
        for name, shape in config.theta_shapes().items()
    }
    blob = save_safetensors(theta)
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()}
    meta = {
        "format": "lopt-optimizer",
        "architecture": {"kind": config.kind, **fields},
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    stem_file(stem, ".safetensors").write_bytes(blob)
    stem_file(stem, ".json").write_text(json.dumps(meta))


def mlp_params(num_params: int, device: str = "cpu") -> list[torch.Tensor]:
    """Two square linear layers (weights and biases) with about ``num_params`` entries."""
    width = int(math.sqrt(num_params / 2))
    generator = torch.Generator().manual_seed(0)
    shapes = [(width, width), (width,), (width, width), (width,)]
    params = [torch.randn(s, generator=generator).to(device).requires_grad_() for s in shapes]
    for p in params:
        p.grad = 0.01 * p.detach().clone()
    return params


def step_time(optimizer: torch.optim.Optimizer, params, calls: int, repeats: int) -> float:
    """Seconds per ``step`` (best of ``repeats`` loops of ``calls``, after one warm-up step)."""
    loss = torch.tensor(1.0)
    step = (
        (lambda: optimizer.step(loss=loss))
        if isinstance(optimizer, LearnedOptimizer)
        else optimizer.step
    )
    sync = torch.cuda.synchronize if params[0].is_cuda else (lambda: None)
    step()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            step()
        sync()
        times.append((time.perf_counter() - start) / calls)
    return min(times)


def step_ratios(quick: bool = False, device: str = "cpu") -> dict:
    """Learned step time ÷ Adam step time per architecture and model size."""
    calls, repeats = (3, 2) if quick else (20, 3)
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        stems = {}
        for name, architecture in ARCHITECTURES.items():
            stems[name] = pathlib.Path(folder) / name
            write_random_optimizer(stems[name], architecture)
        for size in SIZES[:2] if quick else SIZES:
            params = mlp_params(size, device)
            adam = step_time(torch.optim.Adam(params, lr=1e-3), params, calls, repeats)
            row = {"num_params": sum(p.numel() for p in params), "adam_ms": 1e3 * adam}
            for name, stem in stems.items():
                for compiled, suffix in ((False, ""), (True, "_compiled")):
                    optimizer = LearnedOptimizer(params, stem, compile=compiled)
                    seconds = step_time(optimizer, params, calls, repeats)
                    row[f"{name}{suffix}_ms"] = 1e3 * seconds
                    row[f"{name}{suffix}_ratio"] = seconds / adam
            rows[str(size)] = row
    return rows


def table(rows: dict) -> str:
    """The results as a markdown table."""
    names = list(ARCHITECTURES)
    header = "".join(
        f" {n} ms/step | {n} ÷ Adam | compiled ms/step | compiled ÷ Adam |" for n in names
    )
    lines = ["| params | Adam ms/step |" + header, "|---:|---:|" + "---:|" * 4 * len(names)]
    for row in rows.values():
        cells = [f"{row['num_params']:,}", f"{row['adam_ms']:.3f}"]
        for name in names:
            for suffix in ("", "_compiled"):
                cells += [
                    f"{row[name + suffix + '_ms']:.3f}",
                    f"{row[name + suffix + '_ratio']:.1f}×",
                ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, sizes up to 100k")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads")
    print(table(step_ratios(args.quick, args.device)))


if __name__ == "__main__":
    main()
