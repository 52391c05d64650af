"""FitNets hint regression (Romero et al., 2015): a learned regressor maps a student feature map to the teacher's."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ConvRegressor(nn.Module):
    """Maps a student feature map ``[B, C_s, H_s, W_s]`` onto the teacher's ``[B, C_t, H_t, W_t]``: conv -> BN -> ReLU.

    The regressor of FitNets (Romero et al., 2015, Sec. 2.2: a convolutional regressor keeps the parameter count
    small), in the form of RepDistiller's ``ConvReg`` (Tian et al., 2020, ``models/util.py``): a 1x1 convolution
    when both maps have the same spatial size, a 3x3 stride-2 convolution when the student's map is twice as
    large, a 4x4 stride-2 transposed convolution when it is half as large; then batch norm and ReLU (the teacher
    maps it regresses onto are post-ReLU).

    Args:
        student_channels: channels of the student's hint-layer map.
        teacher_channels: channels of the teacher's guided-layer map.
        scale: teacher spatial size divided by student spatial size: ``1``, ``0.5`` or ``2``.

    Example:
        >>> import torch
        >>> ConvRegressor(16, 64, scale=0.5)(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 64, 4, 4])
    """

    def __init__(self, student_channels: int, teacher_channels: int, scale: float = 1.0) -> None:
        super().__init__()
        convolutions = {
            1.0: lambda: nn.Conv2d(student_channels, teacher_channels, 1, bias=False),
            0.5: lambda: nn.Conv2d(student_channels, teacher_channels, 3, stride=2, padding=1, bias=False),
            2.0: lambda: nn.ConvTranspose2d(student_channels, teacher_channels, 4, stride=2, padding=1, bias=False),
        }
        if scale not in convolutions:
            raise ValueError(
                f"scale (teacher size / student size of the hinted maps) must be one of {sorted(convolutions)}, "
                f"got {scale}"
            )
        self.regressor = nn.Sequential(convolutions[scale](), nn.BatchNorm2d(teacher_channels), nn.ReLU())

    @classmethod
    def between(cls, student_map: Tensor, teacher_map: Tensor) -> ConvRegressor:
        """A regressor for maps shaped like these two example maps (e.g. from a forward pass on a dummy batch)."""
        scale = teacher_map.shape[-1] / student_map.shape[-1]
        return cls(student_map.shape[1], teacher_map.shape[1], scale=scale)

    def forward(self, student_map: Tensor) -> Tensor:
        """The student's map regressed into the teacher's channel count and spatial size."""
        return self.regressor(student_map)


def hint_loss(regressed_student_map: Tensor, teacher_map: Tensor) -> Tensor:
    """FitNets hint loss: mean squared error between the regressed student map and the teacher map.

    Romero et al. (2015), Eq. 3 write ``1/2 ||u_h - r(v_g)||^2``; RepDistiller's ``HintLoss`` (which lit-kd's
    default weight of 100 comes from) is ``nn.MSELoss()``, the mean over every element, used here.

    Example:
        >>> import torch
        >>> hint_loss(torch.zeros(1, 2, 1, 1), torch.tensor([[[[1.0]], [[3.0]]]])).item()
        5.0
    """
    if regressed_student_map.shape != teacher_map.shape:
        raise ValueError(
            f"the regressed student map {tuple(regressed_student_map.shape)} must have the teacher map's shape "
            f"{tuple(teacher_map.shape)}"
        )
    return F.mse_loss(regressed_student_map, teacher_map)
