"""The networks: ResNet34 backbone, transformer dreamer, guidance head, and the system that composes them."""
from .backbone import build_backbone
from .dreamer import Dreamer
from .guidance import GuidanceHead
from .system import CardiacDreamer

__all__ = ["CardiacDreamer", "Dreamer", "GuidanceHead", "build_backbone"]
