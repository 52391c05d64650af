"""lit-kd: knowledge-distillation methods as PyTorch Lightning modules."""

__version__ = "0.1.0"
