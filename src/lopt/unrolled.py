"""An affine layer unrolled over whole arrays, shared by the JAX and PyTorch optimizer networks.

The per-parameter MLPs of the learned optimizers apply a few units to every parameter of a
tensor. Written as scalar-weight multiply-adds over the feature arrays, rather than as a matmul
of a stacked ``(features, numel)`` matrix, the compilers (XLA for ``lopt.learned``,
TorchInductor for ``lopt.torch.compiled``) fuse the layer with its inputs into one loop over the
parameters. Plain Python over indexable arrays: it imports neither framework.
"""

from __future__ import annotations


def affine(weight, bias, inputs: list) -> list:
    """``out_i = bias_i + Σ_j weight_ij · inputs_j``, one output array per row of ``weight``.

    Args:
        weight: ``(out, len(inputs))`` (JAX array or torch tensor).
        bias: ``(out,)``.
        inputs: arrays of one shape.
    """
    outputs = []
    for i in range(weight.shape[0]):
        total = bias[i] + weight[i, 0] * inputs[0]
        for j in range(1, len(inputs)):
            total = total + weight[i, j] * inputs[j]
        outputs.append(total)
    return outputs
