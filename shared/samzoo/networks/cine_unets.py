"""U-Net baselines of cine segmentation on (B, C, H, W, T) clips, the input CMR2D+T-SAM takes.

- :class:`Framewise`: any 2D network applied to each frame on its own (the 2D U-Net baseline);
- :class:`RecurrentUNet`: MONAI's ``BasicUNet`` in 2D with a :class:`~samzoo.networks.convlstm.ConvLSTM` across the
  frames at its bottleneck (the 2D recurrent U-Net baseline).

The 3D U-Net baseline, time as depth, is MONAI's ``DynUNet`` as it is (configured in the bundle).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import BasicUNet
from torch import nn

from .convlstm import ConvLSTM


def frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W, T) -> (B * T, C, H, W), frames of one clip adjacent."""
    b, c, h, w, t = x.shape
    return x.permute(0, 4, 1, 2, 3).reshape(b * t, c, h, w)


def batch_to_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B * T, C, H, W) -> (B, C, H, W, T), the inverse of :func:`frames_to_batch`."""
    n, c, h, w = x.shape
    return x.reshape(n // frames, frames, c, h, w).permute(0, 2, 3, 4, 1)


class Framewise(nn.Module):
    """Apply a 2D network to every frame of a clip: (B, C, H, W, T) -> (B, C_out, H, W, T)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_to_frames(self.network(frames_to_batch(x)), x.shape[-1])


class RecurrentUNet(nn.Module):
    """2D U-Net whose bottleneck features pass through a ConvLSTM over the frames: (B, C, H, W, T) -> logits
    (B, out_channels, H, W, T).

    Encoder and decoder are MONAI ``BasicUNet`` (2D) blocks with its ``features`` (five levels and the output
    width; H and W multiples of 16). The ConvLSTM keeps the bottleneck width: with ``bidirectional`` each direction
    has half of it and their hidden states are concatenated (docs of the cine_baselines bundle, *recurrent U-Net*).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (32, 32, 64, 128, 256, 32),
        bidirectional: bool = True,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.unet = BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels, features=features)
        width = self.unet.down_4.convs.conv_1.conv.out_channels
        if bidirectional and width % 2:
            raise ValueError(f"a bidirectional ConvLSTM splits the bottleneck width {width} in two: use an even width")
        self.recurrent = ConvLSTM(width, width // 2 if bidirectional else width, kernel_size, bidirectional)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1]
        u = self.unet
        x0 = u.conv_0(frames_to_batch(x))  # B*T x F0 x H x W
        x1 = u.down_1(x0)
        x2 = u.down_2(x1)
        x3 = u.down_3(x2)
        x4 = u.down_4(x3)  # B*T x F4 x H/16 x W/16
        sequence = x4.reshape(-1, frames, *x4.shape[1:])  # B x T x F4 x h x w
        x4 = self.recurrent(sequence).reshape(x4.shape)
        u1 = u.upcat_1(u.upcat_2(u.upcat_3(u.upcat_4(x4, x3), x2), x1), x0)
        return batch_to_frames(u.final_conv(u1), frames)
