"""The dreamer: a transformer that imagines the backbone feature map at t2 from the map at t1 and the move.

Tokens are either the 512 channels (each a vector of the h*w spatial values) or the h*w positions (each a vector of
512 channel values); one extra token carries the standardized move. The output is a residual: the predicted map is
the input map plus a learned change, because consecutive frames of a sweep look alike and predicting the small
difference is easier than reproducing the whole map.
"""
from __future__ import annotations

import torch
from torch import nn

from .backbone import FEATURE_CHANNELS

TOKEN_TYPES = ("channel", "spatial")
MOVE_DIM = 6


class Dreamer(nn.Module):
    """``features [B, 512, h, w], move [B, 6] -> predicted features [B, 512, h, w]``.

    ``feature_hw`` is the side of the square feature map (``image_size // 32``); it fixes the token count.
    ``attention_dropout`` is separate from ``dropout`` and off by default (see ``__init__``).
    """

    def __init__(
        self,
        feature_hw: int,
        d_model: int = 768,
        num_heads: int = 12,
        num_layers: int = 6,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        token_type: str = "channel",
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if token_type not in TOKEN_TYPES:
            raise ValueError(f"token_type must be one of {TOKEN_TYPES}, got {token_type!r}")
        self.token_type = token_type
        self.feature_hw = feature_hw
        positions = feature_hw * feature_hw
        if token_type == "channel":
            num_tokens, token_dim = FEATURE_CHANNELS, positions
        else:
            num_tokens, token_dim = positions, FEATURE_CHANNELS
        self.num_tokens = num_tokens
        self.embed = nn.Linear(token_dim, d_model)
        self.action_embed = nn.Linear(MOVE_DIM, d_model)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + 1, d_model))  # +1: the action token, first
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model,
            num_heads,
            dim_feedforward=dim_feedforward or 4 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Dropout on the attention weights makes PyTorch's CPU attention fall back from the fused (flash) kernel to
        # one that materializes every [tokens x tokens] map: at 513 tokens, batch 16 and 12 heads that is ~650 MB
        # per layer and slower. ``dropout`` still applies to the residual branches and the feed-forward block.
        layer.self_attn.dropout = attention_dropout
        # Nested tensors only serve padded batches, and norm_first layers cannot use them anyway.
        self.encoder = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.unembed = nn.Linear(d_model, token_dim)

    def forward(self, features: torch.Tensor, move: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        if channels != FEATURE_CHANNELS or height != self.feature_hw or width != self.feature_hw:
            raise ValueError(
                f"Dreamer built for [B, {FEATURE_CHANNELS}, {self.feature_hw}, {self.feature_hw}] features, "
                f"got {list(features.shape)}: build the model with the image size the data uses"
            )
        tokens = features.flatten(2)  # [B, 512, h, w] -> [B, 512, h*w]  (reshape: channels_last inputs copy)
        if self.token_type == "spatial":
            tokens = tokens.transpose(1, 2)  # -> [B, h*w, 512]
        action = self.action_embed(move).unsqueeze(1)  # [B, 6] -> [B, 1, d]
        x = torch.cat([action, self.embed(tokens)], dim=1) + self.pos_embed  # [B, 1 + N, d]
        x = self.encoder(x)
        delta = self.unembed(x[:, 1:])  # drop the action token: [B, N, d] -> [B, N, token_dim]
        if self.token_type == "spatial":
            delta = delta.transpose(1, 2)  # [B, h*w, 512] -> [B, 512, h*w]
        return features + delta.reshape(batch, channels, height, width)
