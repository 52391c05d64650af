"""lit-kd: knowledge-distillation methods as PyTorch Lightning modules."""

from lit_kd.quiet import drop_advertising_tips

__version__ = "0.1.0"

drop_advertising_tips()
