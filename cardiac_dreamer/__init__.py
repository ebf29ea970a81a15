"""cardiac_dreamer: world models for echocardiography probe guidance, in plain PyTorch."""

__version__ = "0.1.0"
