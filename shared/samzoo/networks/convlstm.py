"""Convolutional LSTM (Shi et al., NeurIPS 2015) over a sequence of 2D feature maps, optionally bidirectional.

MONAI has no recurrent convolutional layer; the 2D recurrent U-Net baseline of cine segmentation needs one to carry
information between the frames of a cine. Gates are one convolution over the concatenated input and hidden state
(no peephole connections), the forget-gate bias starts at 1 so early training keeps the cell state.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvLSTMCell(nn.Module):
    """One step: input (N, C_in, H, W) and state (h, c), each (N, C_hidden, H, W) -> new (h, c)."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(
            in_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2
        )
        with torch.no_grad():
            self.gates.bias.zero_()
            self.gates.bias[hidden_channels : 2 * hidden_channels].fill_(1.0)  # forget gate

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero hidden and cell state for a step input ``x`` (N, C_in, H, W)."""
        zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
        return zeros, zeros


class ConvLSTM(nn.Module):
    """A ConvLSTM layer over time: (B, T, C_in, H, W) -> (B, T, out_channels, H, W).

    ``bidirectional`` runs a second cell from the last frame to the first and concatenates both hidden states, so
    every frame sees the whole cine (``out_channels = 2 * hidden_channels``); otherwise each frame sees only the
    frames before it (``out_channels = hidden_channels``).
    """

    def __init__(
        self, in_channels: int, hidden_channels: int, kernel_size: int = 3, bidirectional: bool = True
    ) -> None:
        super().__init__()
        self.forward_cell = ConvLSTMCell(in_channels, hidden_channels, kernel_size)
        self.backward_cell = ConvLSTMCell(in_channels, hidden_channels, kernel_size) if bidirectional else None
        self.out_channels = hidden_channels * (2 if bidirectional else 1)

    @staticmethod
    def _scan(cell: ConvLSTMCell, frames: list[torch.Tensor]) -> list[torch.Tensor]:
        state = cell.initial_state(frames[0])
        outputs = []
        for x in frames:
            state = cell(x, state)
            outputs.append(state[0])
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"ConvLSTM expects (B, T, C, H, W), got shape {tuple(x.shape)}")
        frames = list(x.unbind(dim=1))
        out = torch.stack(self._scan(self.forward_cell, frames), dim=1)
        if self.backward_cell is not None:
            backward = torch.stack(self._scan(self.backward_cell, frames[::-1])[::-1], dim=1)
            out = torch.cat([out, backward], dim=2)
        return out
