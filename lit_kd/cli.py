"""The ``lit-kd`` command (also ``python -m lit_kd``): every lit-kd command is one of its subcommands.

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI's (:class:`~lit_kd.lightning_cli.LitKDCLI`); the
others are drivers with their own options, each a module's ``main(args)``. This module only dispatches: it imports
the drivers, and none of them imports it.

Examples:
    lit-kd --help
    lit-kd fit --config recipes/cifar10/kd_resnet56_resnet20.yaml --data.data_dir data
    lit-kd export --config recipes/cifar10/kd_resnet56_resnet20.yaml --ckpt_path best.ckpt --output_dir exported/
    lit-kd born-again --config recipes/cifar10/born_again_resnet20.yaml --generations 3 --output_dir runs/ba
    lit-kd synthesize --help
    lit-kd teacher-memo --config recipes/cifar10/kd_resnet56_resnet20.yaml --model.init_args.teacher_memo memo.st
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from lightning.pytorch.cli import ArgsType
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_kd import born_again, export, synthesis, teacher_memo
from lit_kd.errors import one_line_errors
from lit_kd.lightning_cli import LitKDCLI

#: Every subcommand with the one line ``lit-kd --help`` shows for it.
COMMANDS = {
    "fit": "train a recipe's method (--config RECIPE, any --section.option VALUE)",
    "validate": "evaluate a recipe's method on the validation split (--ckpt_path for trained weights)",
    "test": "evaluate a recipe's method on the test split (--ckpt_path for trained weights)",
    "predict": "write a recipe's predictions on --data.predict_files (default: the test split) to a CSV",
    "export": "write a checkpoint's trained network as a state dict, a torch.export program and/or ONNX",
    "born-again": "train born-again generations of a self-distillation recipe, each taught by the previous one",
    "synthesize": "cGAN-KD stage 2: sample a trained conditional GAN, filter and relabel with the teacher, save",
    "teacher-memo": "compute a recipe's teacher outputs on every view of every training image into its memo file",
}
#: The subcommands that are not LightningCLI's: each takes the arguments after its name.
DRIVERS: dict[str, Callable[[list[str]], None]] = {
    "export": export.main,
    "born-again": born_again.main,
    "synthesize": synthesis.main,
    "teacher-memo": teacher_memo.main,
}

#: The exit status of a run stopped by SIGTERM (128 + the signal's number, the shell's convention), so that
#: ``lit-kd fit ... && lit-kd test ...`` does not go on with a half-trained model.
SIGTERM_EXIT_STATUS = 143


def overview() -> str:
    """What ``lit-kd --help`` prints: the usage line and one line per subcommand."""
    width = max(len(name) for name in COMMANDS)
    return "\n".join(
        [
            f"usage: lit-kd {{{','.join(COMMANDS)}}} ...",
            "",
            "lit-kd: knowledge-distillation methods as PyTorch Lightning modules, run from recipes.",
            "",
            "commands:",
            *(f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()),
            "",
            "`lit-kd <command> --help` lists a command's options.",
        ]
    )


def main(args: ArgsType = None) -> None:
    """Entry point of ``lit-kd`` and ``python -m lit_kd``: runs the subcommand named first.

    A configuration or data error (:func:`~lit_kd.errors.configuration_error`) is printed as one line,
    ``lit-kd: error: ...``, and the command exits with status 2; ``LIT_KD_TRACEBACK=1`` shows the full traceback
    instead. A run stopped by SIGTERM (a scheduler's pre-emption, ``kill``) exits with status 143 after saving
    ``last.ckpt`` (:class:`~lit_kd.callbacks.ResumableCheckpoint`). Without a subcommand, :func:`overview` is printed
    (and the status is 2).
    """
    arguments = sys.argv[1:] if args is None else list(args)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(overview(), file=sys.stdout if arguments else sys.stderr)
        raise SystemExit(0 if arguments else 2)
    try:
        with one_line_errors():
            if arguments[0] in DRIVERS:
                DRIVERS[arguments[0]](arguments[1:])
            else:
                # without args, LightningCLI reads sys.argv itself; args beside a command line would warn that both
                # were given
                LitKDCLI(args=None if args is None else arguments)
    except SIGTERMException:
        print(
            f"lit-kd: stopped by SIGTERM before the end of training; last.ckpt holds the weights reached (resume with "
            f"--ckpt_path); exit status {SIGTERM_EXIT_STATUS}",
            file=sys.stderr,
        )
        raise SystemExit(SIGTERM_EXIT_STATUS) from None


if __name__ == "__main__":
    main()
