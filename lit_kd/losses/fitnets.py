"""FitNets hint regression (Romero et al., 2015): a learned regressor maps a student feature map to the teacher's."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ConvRegressor(nn.Module):
    """Maps a student feature map ``[B, C_s, H_s, W_s]`` onto the teacher's ``[B, C_t, H_t, W_t]``: conv -> BN -> ReLU.

    The regressor of FitNets (Romero et al., 2015, Sec. 2.2: a convolutional regressor keeps the parameter count
    small), in the form of RepDistiller's ``ConvReg`` (Tian et al., 2020, ``models/util.py:131-154``): a 1x1
    convolution when both maps have the same spatial size, a 3x3 stride-2 convolution when the student's map is
    twice as large, a 4x4 stride-2 transposed convolution when it is half as large, and a ``(1 + H_s - H_t) x
    (1 + W_s - W_t)`` convolution when it is larger by another amount; then batch norm and ReLU (the teacher maps it
    regresses onto are post-ReLU). The convolutions have no bias (the batch norm absorbs it).

    Args:
        student_shape: ``(C, H, W)`` of the student's hint-layer map.
        teacher_shape: ``(C, H, W)`` of the teacher's guided-layer map.

    Raises:
        ValueError: the student's map is smaller than the teacher's, other than exactly half its size.

    Example:
        >>> import torch
        >>> ConvRegressor((16, 8, 8), (64, 4, 4))(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 64, 4, 4])
        >>> ConvRegressor((16, 7, 7), (64, 4, 4))(torch.randn(2, 16, 7, 7)).shape
        torch.Size([2, 64, 4, 4])
    """

    def __init__(self, student_shape: tuple[int, int, int], teacher_shape: tuple[int, int, int]) -> None:
        super().__init__()
        (s_c, s_h, s_w), (t_c, t_h, t_w) = student_shape, teacher_shape
        if (s_h, s_w) == (t_h, t_w):
            convolution: nn.Module = nn.Conv2d(s_c, t_c, 1, bias=False)
        elif (s_h, s_w) == (2 * t_h, 2 * t_w):
            convolution = nn.Conv2d(s_c, t_c, 3, stride=2, padding=1, bias=False)
        elif (2 * s_h, 2 * s_w) == (t_h, t_w):
            convolution = nn.ConvTranspose2d(s_c, t_c, 4, stride=2, padding=1, bias=False)
        elif s_h >= t_h and s_w >= t_w:
            convolution = nn.Conv2d(s_c, t_c, (1 + s_h - t_h, 1 + s_w - t_w), bias=False)
        else:
            raise ValueError(
                f"a student map of {s_h}x{s_w} cannot be regressed onto a teacher map of {t_h}x{t_w}: a smaller "
                "student map must be exactly half the teacher's size; choose a student layer with a larger map"
            )
        self.regressor = nn.Sequential(convolution, nn.BatchNorm2d(t_c), nn.ReLU())

    @classmethod
    def between(cls, student_map: Tensor, teacher_map: Tensor) -> ConvRegressor:
        """A regressor for maps shaped like these two example maps ``[B, C, H, W]`` (e.g. from a probe batch)."""
        return cls(tuple(student_map.shape[1:]), tuple(teacher_map.shape[1:]))

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
