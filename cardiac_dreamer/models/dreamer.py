"""The dreamer: a transformer that imagines the backbone feature map at t2 from the map at t1 and the move.

Tokens are either the 512 channels (each a vector of the h*w spatial values) or the h*w positions (each a vector of
512 channel values). Every token gets its own linear embedding of the move, added to it. With a single extra
"action token", or one move embedding shared by all tokens, the 512 channel tokens all receive nearly the same
vector, which after the unembedding and the guidance head's average pool is one offset on every channel: the move
never reached the head (measured: a move-transfer slope of 0.00 on every axis with channel tokens). A per-token
projection gives each channel (or position) its own response to the move, through the residual stream directly and
through the attention and feed-forward blocks.

The output is a residual, ``features + delta``, with the unembedding zero-initialized: the dreamer starts as the
identity (the imagined t2 is the t1 map) and learns the change a move makes. ``delta`` has two parts: what the
transformer makes of the tokens and the move, and a first-order term, a learned linear map from the move to each
token's change (zero at the start). A small probe move changes the features about linearly; the linear term learns
that at once, where the path through the transformer only opens once its zero-initialized unembedding has grown
(measured: it lifted the move-transfer slope from 0.28-0.70 to 0.45-0.77 after the same short training).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import TOKEN_TYPES, check_choice
from .backbone import FEATURE_CHANNELS

MOVE_DIM = 6


class Dreamer(nn.Module):
    """``features [B, 512, h, w], standardized move [B, 6] -> imagined features [B, 512, h, w]``.

    ``feature_hw`` is the side of the square feature map (``image_size // 32``); it fixes the token count.
    ``attention_dropout`` is separate from ``dropout`` and off by default (see ``__init__``).
    ``activation_checkpointing`` recomputes each layer's activations in the backward pass while training: the
    transformer's activations are most of the memory at the production size, for about a third more compute.
    """

    def __init__(
        self,
        feature_hw: int,
        d_model: int = 768,
        num_heads: int = 12,
        num_layers: int = 6,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        token_type: str = "spatial",
        attention_dropout: float = 0.0,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        check_choice("token_type", token_type, TOKEN_TYPES)
        self.token_type = token_type
        self.feature_hw = feature_hw
        self.activation_checkpointing = activation_checkpointing
        positions = feature_hw * feature_hw
        if token_type == "channel":
            num_tokens, token_dim = FEATURE_CHANNELS, positions
        else:
            num_tokens, token_dim = positions, FEATURE_CHANNELS
        self.num_tokens = num_tokens
        self.embed = nn.Linear(token_dim, d_model)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, d_model))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.move_embed = nn.Parameter(torch.zeros(num_tokens, MOVE_DIM, d_model))  # one projection per token
        nn.init.normal_(self.move_embed, std=MOVE_DIM**-0.5)  # a standardized move -> unit-variance embedding, as
        # strong as the tokens it is added to (a 0.02 init drowned in them: spatial tokens never used the move)
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
        # one that materializes every [tokens x tokens] map: at 512 tokens, batch 16 and 12 heads that is ~650 MB
        # per layer and slower. ``dropout`` still applies to the residual branches and the feed-forward block.
        layer.self_attn.dropout = attention_dropout
        # Nested tensors only serve padded batches, and norm_first layers cannot use them anyway.
        self.encoder = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.unembed = nn.Linear(d_model, token_dim)
        nn.init.zeros_(self.unembed.weight)  # delta = 0: the dreamer starts as the identity
        nn.init.zeros_(self.unembed.bias)
        self.move_to_delta = nn.Parameter(torch.zeros(num_tokens, MOVE_DIM, token_dim))  # the first-order term

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
        conditioning = torch.einsum("bm,nmd->bnd", move.to(self.move_embed.dtype), self.move_embed)  # [B, N, d]
        x = self.embed(tokens) + self.pos_embed + conditioning  # [B, N, d]
        x = self.encoder.norm(self._layers(x))
        first_order = torch.einsum("bm,nmt->bnt", move.to(self.move_to_delta.dtype), self.move_to_delta)
        delta = self.unembed(x) + first_order  # [B, N, d] -> [B, N, token_dim]
        if self.token_type == "spatial":
            delta = delta.transpose(1, 2)  # [B, h*w, 512] -> [B, 512, h*w]
        return features + delta.reshape(batch, channels, height, width)

    def _layers(self, x: torch.Tensor) -> torch.Tensor:
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.encoder.layers:
            x = checkpoint(layer, x, use_reentrant=False) if recompute else layer(x)
        return x


class LatentPredictor(nn.Conv2d):
    """The dreamed t2 features carried into the latent target's space: a 1x1 convolution that starts as the identity.

    Why: the dreamed features have two readers. The guidance head reads them in the online backbone's space; the
    latent loss compares them with the EMA target encoder's view of image t2, and the two encoders drift apart
    while the backbone learns (measured on the demo: the target's own view of image t1 lay 0.16-0.45x as far from
    its view of t2 as the online t1 features did). One map cannot sit in both spaces, so the dreamer spent itself on
    neither (dreamed / copy 0.99-1.04x). As in BYOL and I-JEPA, a predictor on top of the world model answers the
    target; the head keeps reading the dreamer itself.

    Even so, a map from one encoder's features to another's errs more than the target's own view of image t1 lies
    from its view of t2 (on the demo, 1.3-1.9x), so the prediction was worse than "nothing changes" there. With
    ``loss.latent_prediction: change`` the predictor's reading of what the dreamer changed (its reading of the dreamed
    t2 features less that of the t1 features: the bias cancels) is added to the target's own view of image t1.
    """

    def __init__(self, channels: int = FEATURE_CHANNELS):
        super().__init__(channels, channels, 1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(channels)[:, :, None, None])
            self.bias.zero_()
