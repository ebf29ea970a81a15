"""The networks: ResNet34 backbone, transformer dreamer, guidance head, the variants that compose them, and the
registry that builds a variant from a config (:func:`build_model`)."""
from .backbone import build_backbone
from .dreamer import Dreamer
from .guidance import GuidanceHead
from .registry import VARIANTS, build_model, can_imagine, model_from_checkpoint
from .system import CardiacDreamer, GuidanceModel

__all__ = ["CardiacDreamer", "Dreamer", "GuidanceHead", "GuidanceModel", "VARIANTS", "build_backbone", "build_model",
           "can_imagine", "model_from_checkpoint"]
