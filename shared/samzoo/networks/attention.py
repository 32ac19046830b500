"""Attention blocks, all computed with :func:`torch.nn.functional.scaled_dot_product_attention`.

SAM's own modules (the image encoder's ``Attention``, the mask decoder's two-way blocks, TinyViT's window attention)
are evaluated here from their pretrained weights, so one switch of SDPA backend (e.g.
``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)`` for the plain matmul-softmax path) governs every attention of
a network. SAM's relative-position term is folded into the queries and keys, so no (N, N) bias that needs a gradient
is built and the fused kernels (which refuse one on the CPU) run; TinyViT's fixed window biases go in as ``attn_mask``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from segment_anything.modeling.image_encoder import Attention as SamAttention
from segment_anything.modeling.transformer import Attention as DecoderAttention
from segment_anything.modeling.transformer import TwoWayAttentionBlock
from torch import nn

from .pos_embed import resize_rel_pos


def sinusoidal_encoding(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Transformer sine/cosine encoding of positions ``0..length-1``: (length, dim), ``dim`` even."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = position * inv_freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1).to(dtype)


def grid_encoding(height: int, width: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """2D sine/cosine encoding, half the channels for the row and half for the column: (height * width, dim)."""
    rows = sinusoidal_encoding(height, dim // 2, device, dtype)[:, None].expand(height, width, dim // 2)
    cols = sinusoidal_encoding(width, dim // 2, device, dtype)[None].expand(height, width, dim // 2)
    return torch.cat([rows, cols], dim=-1).reshape(height * width, dim)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C / heads)"""
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, D) -> (B, N, heads * D)"""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def rel_pos_lookup(table: torch.Tensor, size: int) -> torch.Tensor:
    """Relative-position embeddings for every (query, key) pair on an axis of ``size`` tokens: (size, size, C).

    The table (L, C) is resampled to ``2 * size - 1`` entries when needed, as SAM does.
    """
    table = resize_rel_pos(table, 2 * size - 1)
    index = torch.arange(size, device=table.device)
    return table[index[:, None] - index[None, :] + size - 1]


def fold_decomposed_rel_pos(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    grid: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAM's decomposed relative-position term (MViTv2) folded into the queries and keys, so that plain attention
    without a mask computes it and no (h * w) x (h * w) bias is ever materialised.

    The term is bias[(i, j), (k, l)] = q_ij . Rh[i - k] + q_ij . Rw[j - l]: for each query a vector of h + w values
    (its dot products with every row offset and every column offset), selected by the key's row k and column l. So
    the queries gain those h + w values and the keys gain the one-hot codes of their row and column; the queries are
    pre-scaled, and attention must then run with ``scale=1``. All three are zero-padded to one width, a multiple of
    8, since fused kernels need equal widths; the output's first ``D`` channels are the attention result.

    Args:
        q, k, v: (B, heads, h * w, D).
        rel_pos_h, rel_pos_w: the tables of the height and width axes, (L, D).
        grid: (h, w).

    Returns:
        (q', k', v'), each (B, heads, h * w, D'), with D' >= D + h + w.
    """
    h, w = grid
    b, heads, tokens, d = q.shape
    r_q = q.reshape(b, heads, h, w, d)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rel_pos_lookup(rel_pos_h, h).to(q.dtype))
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rel_pos_lookup(rel_pos_w, w).to(q.dtype))
    width = -(-(d + h + w) // 8) * 8
    rows = torch.eye(h, dtype=q.dtype, device=q.device)[:, None].expand(h, w, h)
    cols = torch.eye(w, dtype=q.dtype, device=q.device)[None].expand(h, w, w)
    codes = F.pad(torch.cat([rows, cols], dim=-1).reshape(tokens, h + w), (0, width - d - h - w))
    rel = torch.cat([rel_h, rel_w], dim=-1).reshape(b, heads, tokens, h + w)
    q = F.pad(torch.cat([q * d**-0.5, rel], dim=-1), (0, width - d - h - w))
    k = torch.cat([k, codes.expand(b, heads, tokens, -1)], dim=-1)
    return q, k, F.pad(v, (0, width - d))


def sam_attention(attn: SamAttention, x: torch.Tensor) -> torch.Tensor:
    """SAM image-encoder attention on a token grid, from ``attn``'s weights: (B, H, W, C) -> (B, H, W, C)."""
    b, h, w, c = x.shape
    q, k, v = attn.qkv(x).reshape(b, h * w, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    if attn.use_rel_pos:
        d = q.shape[-1]
        q, k, v = fold_decomposed_rel_pos(q, k, v, attn.rel_pos_h, attn.rel_pos_w, (h, w))
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)[..., :d]
    else:
        out = F.scaled_dot_product_attention(q, k, v)
    return attn.proj(_merge_heads(out).reshape(b, h, w, c))


def tinyvit_window_attention(attn: nn.Module, x: torch.Tensor, window: int) -> torch.Tensor:
    """TinyViT's attention (with its own pre-norm) over non-overlapping windows, zero-padding the grid as TinyViT
    does, from ``attn``'s weights (a ``tiny_vit_sam.Attention``): (B, H, W, C) -> (B, H, W, C)."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    nh, nw = (h + pad_h) // window, (w + pad_w) // window
    windows = x.view(b, nh, window, nw, window, c).transpose(2, 3).reshape(b * nh * nw, window * window, c)
    n, tokens, _ = windows.shape
    qkv = attn.qkv(attn.norm(windows)).view(n, tokens, attn.num_heads, -1)
    q, k, v = (t.transpose(1, 2) for t in qkv.split([attn.key_dim, attn.key_dim, attn.d], dim=3))
    bias = attn.attention_biases[None, :, attn.attention_bias_idxs].to(q.dtype)  # 4D: fused kernels accept it
    out = attn.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=bias)))
    out = out.view(b, nh, nw, window, window, c).transpose(2, 3).reshape(b, nh * window, nw * window, c)
    return out[:, :h, :w]


def decoder_attention(attn: DecoderAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SAM mask-decoder attention (with its internal downsampling of the width) from ``attn``'s weights.

    q: (B, Nq, C), k and v: (B, Nk, C) -> (B, Nq, C).
    """
    heads = attn.num_heads
    out = F.scaled_dot_product_attention(
        _split_heads(attn.q_proj(q), heads), _split_heads(attn.k_proj(k), heads), _split_heads(attn.v_proj(v), heads)
    )
    return attn.out_proj(_merge_heads(out))


def two_way_block(
    layer: TwoWayAttentionBlock,
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_pe: torch.Tensor,
    key_pe: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block of SAM's two-way transformer from ``layer``'s weights: prompt tokens attend to themselves and to
    the image, then the image attends to the tokens.

    queries, query_pe: (B, N_tokens, C); keys, key_pe: (B, h * w, C). Returns the updated (queries, keys).
    """
    if layer.skip_first_layer_pe:
        queries = decoder_attention(layer.self_attn, queries, queries, queries)
    else:
        q = queries + query_pe
        queries = queries + decoder_attention(layer.self_attn, q, q, queries)
    queries = layer.norm1(queries)
    q, k = queries + query_pe, keys + key_pe
    queries = layer.norm2(queries + decoder_attention(layer.cross_attn_token_to_image, q, k, keys))
    queries = layer.norm3(queries + layer.mlp(queries))
    q = queries + query_pe
    keys = layer.norm4(keys + decoder_attention(layer.cross_attn_image_to_token, k, q, queries))
    return queries, keys


class TemporalAttention(nn.Module):
    """Multi-head self-attention across the T frames at each spatial token (TimeSformer's temporal step).

    Pre-norm; a fixed sine/cosine encoding of the frame index is added to the normalised input, so it reaches only
    this branch and never the frozen spatial path. The output projection starts at zero: a new block computes exactly
    the pretrained function until training moves it.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x: (B * T, H, W, C), frames of a clip consecutive -> the branch output, same shape (add it to x)."""
        bt, h, w, c = x.shape
        b, heads = bt // frames, self.num_heads
        y = self.norm(x).reshape(b, frames, h * w, c) + sinusoidal_encoding(frames, c, x.device, x.dtype)[:, None]
        # The projections work per token in the frame-major layout; one copy moves q, k, v to (B h w, heads, T, D).
        qkv = self.qkv(y).reshape(b, frames, h * w, 3, heads, -1).permute(3, 0, 2, 4, 1, 5)
        q, k, v = qkv.reshape(3, b * h * w, heads, frames, -1).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v).reshape(b, h * w, heads, frames, -1)
        return self.proj(out.permute(0, 3, 1, 2, 4).reshape(bt, h, w, c))


class SkipCrossAttention(nn.Module):
    """U-Transformer's multi-head cross-attention on a skip connection (Petit et al., 2021).

    The decoder features Y (coarse, semantically rich) give queries and keys, the skip S max-pooled to Y's grid
    gives values; the attended map passes a 1x1 convolution and a sigmoid, is upsampled bilinearly to S's grid and
    multiplies S, damping skip features that the decoder finds irrelevant. Y's tokens carry a 2D sine/cosine
    position encoding (``skip_channels`` a multiple of 4).
    """

    def __init__(
        self, decoder_channels: int, skip_channels: int, num_heads: int, act: str | tuple, norm: str | tuple
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.embed_decoder = Convolution(2, decoder_channels, skip_channels, kernel_size=1, act=act, norm=norm)
        self.embed_skip = Convolution(2, skip_channels, skip_channels, kernel_size=1, act=act, norm=norm)
        self.qk = nn.Linear(skip_channels, 2 * skip_channels)
        self.v = nn.Linear(skip_channels, skip_channels)
        self.proj = nn.Linear(skip_channels, skip_channels)
        self.gate = nn.Conv2d(skip_channels, skip_channels, kernel_size=1)

    def forward(self, decoder: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """decoder: (N, Cy, h, w); skip: (N, Cs, H, W) with H, W about 2h, 2w -> the gated skip (N, Cs, H, W)."""
        h, w = decoder.shape[-2:]
        y = self.embed_decoder(decoder).flatten(2).transpose(1, 2)
        y = y + grid_encoding(h, w, y.shape[-1], y.device, y.dtype)
        s = self.embed_skip(F.adaptive_max_pool2d(skip, (h, w))).flatten(2).transpose(1, 2)
        q, k = self.qk(y).chunk(2, dim=-1)
        heads = self.num_heads
        v = self.v(s)
        z = F.scaled_dot_product_attention(_split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads))
        z = self.proj(_merge_heads(z)).transpose(1, 2).reshape(skip.shape[0], -1, h, w)
        gate = F.interpolate(torch.sigmoid(self.gate(z)), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return skip * gate
