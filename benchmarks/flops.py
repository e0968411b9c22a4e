"""FLOPs of one DFMA forward pass, counted from the configuration (no model, no torch needed).

Convention: 1 multiply-add = 2 FLOPs; only matrix products are counted (convolutions, linear layers,
attention score and value products, einsums, the pooling matmul), the same convention as
``torch.utils.flop_counter.FlopCounterMode``. Element-wise work (BatchNorm, ReLU, LayerNorm, GELU, softmax,
masking, embedding look-ups, max-pooling) is left out: it is a few percent of the total and is not what
a GEMM rate measures. :func:`measured_flops` counts the eager model with FlopCounterMode for comparison.

The formula, with B = batch, L = sequence length, N = 1 + num_crops images per sample, S = image_size,
d = hidden_size, F = intermediate_size, Fm = mmf_intermediate_size, n = num_layers,
g = pyramid_grid, P = N*g^2 prompt keys per layer, V = N*4*g^2 visual tokens, C = num_labels
(each term is 2 x multiply-adds; ``formula()`` returns this text for the report):
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

FORMULA = """\
FLOPs(B, L) = vision + pfe + text + mmf + head      (2 FLOPs per multiply-add; matmul/conv only)
  vision = B*N * ResNet(S):   stem 2*(7*7*3)*c0*(S/2)^2
           + per bottleneck (v1.5: stride on the 3x3), input Hi x Hi, output Ho x Ho:
             2*[Cin*p*Hi^2 + 9*p*p*Ho^2 + p*4p*Ho^2 + (Cin*4p*Ho^2 if projection shortcut)]
  pfe    = sum over 4 levels of 2*B*N*(C_l*h_l*w_l*g^2 + g^2*C_l*d)        pooling matmul + level projection
           + 2*B*d*d + 2*B*V*d*d + 2*B*V*d                                 query / key projections, relevance
           + 2*B*d*4n + 2*B*n*4*(P)*d + 2*B*n*P*d*d                        level gate, level mix, adapters
  text   = n * 2*B*[ L*d*d (Q) + 2*(P+L)*d*d (K,V) + 2*L*(P+L)*d (scores, values) + L*d*d (out) + 2*L*d*F ]
  mmf    = text->image: 2*B*[ 2*L*d*d + 2*(V+1)*d*d + 2*L*(V+1)*d + 2*L*d*Fm ]
           image->text: 2*B*[ 2*V*d*d + 2*L*d*d + 2*V*L*d + 2*V*d*Fm ]
           balance gate: 2*B*2d*d
  head   = 2*2*B*L*d (marker pick, einsum) + 2*B*3d*C"""
__doc__ += "\n" + FORMULA


@dataclass
class FlopBreakdown:
    """FLOPs per part for one (batch, length); ``total`` is their sum."""

    batch: int
    length: int
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """All parts together."""
        return float(sum(self.parts.values()))

    def to_dict(self) -> dict:
        """JSON-ready: parts and total, in FLOPs."""
        return {"batch": self.batch, "length": self.length, "total": self.total,
                "parts": {k: float(v) for k, v in self.parts.items()}}


def _get(cfg, name):
    return cfg[name] if isinstance(cfg, Mapping) else getattr(cfg, name)


def _conv_out(size: int, stride: int) -> int:
    """Output side of every strided layer in the ResNet (7x7 pad 3, 3x3 pad 1, 1x1 pad 0, maxpool 3 pad 1)."""
    return -(-size // stride)


def resnet_flops(cfg) -> tuple[float, list[tuple[int, int]]]:
    """FLOPs of the ResNet on ONE image, and the (channels, side) of its 4 stage outputs."""
    s = _get(cfg, "image_size")
    stem, expansion = _get(cfg, "resnet_stem"), _get(cfg, "resnet_expansion")
    h = _conv_out(s, 2)
    flops = 2.0 * 7 * 7 * 3 * stem * h * h
    h = _conv_out(h, 2)  # max-pool
    cin = stem
    levels = []
    for i, (depth, planes) in enumerate(zip(_get(cfg, "resnet_depths"), _get(cfg, "resnet_widths"))):
        out = planes * expansion
        for j in range(depth):
            stride = 2 if (i > 0 and j == 0) else 1
            ho = _conv_out(h, stride)
            flops += 2.0 * (cin * planes * h * h + 9 * planes * planes * ho * ho + planes * out * ho * ho)
            if stride != 1 or cin != out:
                flops += 2.0 * cin * out * ho * ho
            cin, h = out, ho
        levels.append((out, h))
    return flops, levels


def model_flops(cfg, batch: int, length: int) -> FlopBreakdown:
    """FLOPs of one forward pass at (batch, length) for a DFMAConfig (or its dict), per part."""
    b, length_ = float(batch), float(length)
    n_img = 1 + _get(cfg, "num_crops")
    d, f, fm = _get(cfg, "hidden_size"), _get(cfg, "intermediate_size"), _get(cfg, "mmf_intermediate_size")
    n_layers, g = _get(cfg, "num_layers"), _get(cfg, "pyramid_grid")
    n_levels = len(_get(cfg, "resnet_widths"))
    cells = g * g
    prompts = n_img * cells            # P: prompt keys per layer
    visual = n_img * n_levels * cells  # V: visual tokens
    per_image, levels = resnet_flops(cfg)
    vision = b * n_img * per_image

    pfe = 0.0
    for channels, side in levels:
        pfe += 2 * b * n_img * (channels * side * side * cells + cells * channels * d)
    pfe += 2 * b * d * d + 2 * b * visual * d * d + 2 * b * visual * d
    pfe += 2 * b * d * n_layers * n_levels + 2 * b * n_layers * n_levels * prompts * d
    pfe += 2 * b * n_layers * prompts * d * d

    keys = prompts + length_
    text = n_layers * 2 * b * (length_ * d * d + 2 * keys * d * d + 2 * length_ * keys * d
                               + length_ * d * d + 2 * length_ * d * f)

    ctx = visual + 1  # + the learned null token
    t2i = 2 * b * (2 * length_ * d * d + 2 * ctx * d * d + 2 * length_ * ctx * d + 2 * length_ * d * fm)
    i2t = 2 * b * (2 * visual * d * d + 2 * length_ * d * d + 2 * visual * length_ * d + 2 * visual * d * fm)
    mmf = t2i + i2t + 2 * b * 2 * d * d

    head = 2 * 2 * b * length_ * d + 2 * b * 3 * d * _get(cfg, "num_labels")
    return FlopBreakdown(batch, length, {"vision": vision, "pfe": pfe, "text": text, "mmf": mmf, "head": head})


def measured_flops(model, inputs) -> tuple[float, dict[str, float]]:
    """FLOPs counted by torch's FlopCounterMode on one eager forward: (total, per aten op).

    FlopCounterMode has no entry for the CPU attention kernel (``_scaled_dot_product_flash_attention_for_cpu``)
    and would miss the score and value products; it is registered here with torch's own SDPA count.
    """
    import torch
    from torch.utils import flop_counter as fc

    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs):
        return fc.sdpa_flop_count(query, key, value)

    mapping = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = cpu_sdpa  # FlopCounterMode wraps it: arguments arrive as shapes
    counter = fc.FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.inference_mode(), counter:
        model(**inputs)
    per_op = {str(k).replace("aten.", ""): float(v)
              for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return float(counter.get_total_flops()), per_op
