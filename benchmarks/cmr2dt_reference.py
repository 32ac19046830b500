"""A straightforward CMR2D+T-SAM forward written from the paper, for the step benchmark to compare against.

It evaluates a built :class:`samzoo.networks.CMR2DTSAM` (ViT backbones, no text prompts) with the same weights, in
the plainest way: every attention is ``softmax(q k^T / sqrt(d) + bias) v`` with the score matrix materialised, SAM's
image-encoder and two-way attention run through segment_anything's own modules, and the temporal attention works on
the (B h w, T, C) layout the paper describes. It computes the same function as samzoo's forward (tested), so the two
can be timed against each other at equal work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from samzoo.networks import CMR2DTSAM
from samzoo.networks.attention import SkipCrossAttention, TemporalAttention, grid_encoding, sinusoidal_encoding
from samzoo.networks.pos_embed import resize_abs_pos_embed
from samzoo.networks.spatiotemporal import SpatioTemporalBlock
from segment_anything.modeling.image_encoder import window_partition, window_unpartition


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head softmax attention with its score matrix materialised: (B, Nq, C), (B, Nk, C) -> (B, Nq, C)."""
    b, n, c = q.shape
    q, k, v = (t.reshape(b, -1, heads, c // heads).transpose(1, 2) for t in (q, k, v))
    scores = (q @ k.transpose(-2, -1)) / (c // heads) ** 0.5
    return (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)


def temporal_attention(module: TemporalAttention, x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B T, h, w, C) -> reshape to (B h w, T, C), attend across the frames, reshape back (the branch output)."""
    bt, h, w, c = x.shape
    y = module.norm(x).reshape(bt // frames, frames, h * w, c).transpose(1, 2).reshape(-1, frames, c)
    q, k, v = module.qkv(y + sinusoidal_encoding(frames, c, x.device, x.dtype)).chunk(3, dim=-1)
    out = module.proj(attention(q, k, v, module.num_heads))
    return out.reshape(bt // frames, h * w, frames, c).transpose(1, 2).reshape(bt, h, w, c)


def refined_block(module: SpatioTemporalBlock, x: torch.Tensor, frames: int) -> torch.Tensor:
    """Temporal attention, SAM's spatial attention (segment_anything's module), SAM's MLP with the scaled adapter."""
    block = module.block
    x = x + temporal_attention(module.temporal, x, frames)
    y = block.norm1(x)
    if block.window_size > 0:
        windows, padded = window_partition(y, block.window_size)
        x = x + window_unpartition(block.attn(windows), block.window_size, padded, y.shape[1:3])
    else:
        x = x + block.attn(y)
    y = block.norm2(x)
    return x + block.mlp(y) + module.adapter(y)


def gated_skip(module: SkipCrossAttention, decoder: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """U-Transformer's cross-attention gate: the decoder map gives queries and keys, the skip pooled to its grid the
    values; the sigmoid of the attended map, upsampled, multiplies the skip."""
    n, _, h, w = decoder.shape
    y = module.embed_decoder(decoder).flatten(2).transpose(1, 2)
    y = y + grid_encoding(h, w, y.shape[-1], y.device, y.dtype)
    s = module.embed_skip(F.adaptive_max_pool2d(skip, (h, w))).flatten(2).transpose(1, 2)
    q, k = module.qk(y).chunk(2, dim=-1)
    z = module.proj(attention(q, k, module.v(s), module.num_heads)).transpose(1, 2).reshape(n, -1, h, w)
    gate = F.interpolate(torch.sigmoid(module.gate(z)), size=skip.shape[-2:], mode="bilinear", align_corners=False)
    return skip * gate


def reference_forward(net: CMR2DTSAM, image: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W, T) clips -> (B, 1, H, W, T) logits of ``net`` computed the straightforward way."""
    if net.text_proj is not None or not hasattr(net.encoder, "blocks"):
        raise ValueError("the reference forward covers ViT backbones without text prompts")
    b, channels, height, width, frames = image.shape
    encoder = net.encoder
    *skips, deepest = encoder.down(image.permute(0, 4, 1, 2, 3).reshape(b * frames, channels, height, width))
    x = encoder.embed(deepest).permute(0, 2, 3, 1)
    x = x + resize_abs_pos_embed(encoder.pos_embed, tuple(x.shape[1:3]))
    for block in encoder.blocks:
        x = refined_block(block, x, frames)
    embedding = encoder.neck(x.permute(0, 3, 1, 2)) + net.no_mask_embed.weight.reshape(1, -1, 1, 1)
    n, dim, h, w = embedding.shape
    keys = embedding.flatten(2).transpose(1, 2)
    key_pe = net.pe_layer((h, w)).flatten(1).transpose(0, 1).expand(n, -1, -1)
    tokens = torch.cat([net.iou_token.weight, net.mask_tokens.weight]).expand(n, -1, -1)
    queries = tokens
    for layer in net.prompt_layers:  # segment_anything's TwoWayAttentionBlock
        queries, keys = layer(queries, keys, tokens, key_pe)
    x = keys.transpose(1, 2).reshape(n, dim, h, w)
    for gate, stage, skip in zip(net.up.gates, net.up.stages, skips[::-1], strict=True):
        x = stage(x, gated_skip(gate, x, skip))
    return net.head(x).reshape(b, frames, 1, height, width).permute(0, 2, 3, 4, 1)
