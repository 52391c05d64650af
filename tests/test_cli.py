"""The ``lit-kd`` command: every command is a subcommand, and lit-kd's modules import each other without a cycle."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

import lit_kd
from lit_kd.cli import main
from lit_kd.data import load_synthetic_set
from lit_kd.models import create_model
from tests.support.cgan import tiny_gan
from tests.support.networks import save_state_dict
from tests.support.training import tiny_cifar, tiny_trainer

PACKAGE_DIR = Path(lit_kd.__file__).resolve().parent
ALL_SUBCOMMANDS = ("fit", "validate", "test", "predict", "export", "born-again", "synthesize", "teacher-memo")


# ------------------------------------------------------------------------------------------- one command
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_subcommand_with_one_line(flag: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([flag])
    assert stopped.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    described = {line.split()[0]: line for line in lines if line.startswith("  ") and line.split()}
    assert tuple(described) == ALL_SUBCOMMANDS  # each command once, in this order, and nothing else
    assert all(len(line.split()) > 3 for line in described.values())  # a name and a sentence on its line


def test_no_subcommand_prints_the_commands_and_fails(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([])
    assert stopped.value.code == 2
    printed = capsys.readouterr().err
    assert all(f"  {name} " in printed for name in ALL_SUBCOMMANDS)


@pytest.mark.parametrize("command", ["born-again", "synthesize", "export", "teacher-memo"])
def test_each_driver_subcommand_has_its_own_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    help_text = capsys.readouterr().out
    assert f"lit-kd {command}" in help_text.splitlines()[0]
    assert "--config" in help_text if command == "teacher-memo" else "--output_dir" in help_text


def test_born_again_runs_through_lit_kd(tmp_path: Path, cifar_folder: Path, capsys: pytest.CaptureFixture) -> None:
    network = {"class_path": "lit_kd.models.CifarResNet", "init_args": {"depth": 8, "num_classes": 10}}
    generation0_teacher = save_state_dict(create_model("resnet8", num_classes=10), tmp_path / "vanilla.pt")
    recipe = {
        "trainer": {
            "max_steps": 1,
            "limit_val_batches": 0,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "accelerator": "cpu",
        },
        "model": {
            "class_path": "lit_kd.methods.SelfDistillation",
            "init_args": {"student": network, "teacher": network, "teacher_checkpoint": "not_this_one.pt"},
        },
        "data": {
            "class_path": "lit_kd.data.CIFAR10DataModule",
            "init_args": {"data_dir": str(cifar_folder), "batch_size": 16, "use_cache": False},
        },
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    main(
        [
            "born-again",
            "--config", str(tmp_path / "recipe.yaml"),
            "--generations", "2",
            "--output_dir", str(tmp_path / "out"),
            "--teacher_checkpoint", str(generation0_teacher),
            "--trainer.max_steps", "2",  # an option for every generation's lit-kd fit
        ]
    )  # fmt: skip
    records = json.loads((tmp_path / "out" / "generations.json").read_text())
    assert [r["teacher_checkpoint"] for r in records] == [str(generation0_teacher), records[0]["checkpoint"]]
    assert all(torch.load(r["checkpoint"], weights_only=False)["global_step"] == 2 for r in records)
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed[-2:]] == ["generation 0", "generation 1"]


def test_synthesize_runs_through_lit_kd(tmp_path: Path, cifar_folder: Path, capsys: pytest.CaptureFixture) -> None:
    pl.seed_everything(0)
    checkpoint = ModelCheckpoint(tmp_path / "gan", filename="gan")
    tiny_trainer(tmp_path, max_steps=1, callbacks=[checkpoint], enable_checkpointing=True).fit(
        tiny_gan(), tiny_cifar(cifar_folder)
    )
    teacher_path = save_state_dict(create_model("resnet8", num_classes=10), tmp_path / "teacher.pt")
    main(
        [
            "synthesize",
            "--gan_checkpoint", str(tmp_path / "gan" / "gan.ckpt"),
            "--teacher", "lit_kd.models.CifarResNet", "--teacher.depth", "8", "--teacher.num_classes", "10",
            "--teacher_checkpoint", str(teacher_path),
            "--data", "lit_kd.data.CIFAR10DataModule",
            "--output_dir", str(tmp_path / "synthetic"),
            "--per_label", "2", "--min_confidence", "0.0", "--require_agreement", "false",
            "--device", "cpu",
        ]
    )  # fmt: skip
    synthetic = load_synthetic_set(tmp_path / "synthetic", image_size=32, task="classification", num_classes=10)
    assert synthetic.provenance["counts"]["generated"] == 20 == len(synthetic.targets)  # the filter keeps all
    assert f"synthetic set written to {tmp_path / 'synthetic'}" in capsys.readouterr().out


def test_driver_errors_name_the_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["born-again", "--config", str(tmp_path / "missing.yaml"), "--output_dir", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("lit-kd born-again: error: config: ")


# ------------------------------------------------------------------------------------------- no import cycle
def module_files(package_dir: Path) -> dict[str, Path]:
    """Every module of the package in ``package_dir`` by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Which of the package's modules each of its modules imports: every ``import`` statement, in functions too.

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``. The parent packages that
    Python runs first are not counted (every module would then be in a cycle with its package's ``__init__``).
    """
    modules = module_files(package_dir)
    package = package_dir.name

    def module_of(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str | None] = set()
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                imported |= {module_of(alias.name) for alias in node.names if alias.name.split(".")[0] == package}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    base = f"{anchor}.{base}" if base else anchor
                if base.split(".")[0] != package:
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    imported.add(full if full in modules else module_of(base))
        graph[name] = {target for target in imported if target is not None and target != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected group of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(path_within(graph, set(group), module))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def path_within(graph: dict[str, set[str]], group: set[str], start: str) -> list[str]:
    """A cycle through ``start`` inside ``group`` (breadth first, so the shortest one)."""
    paths = {target: [start, target] for target in sorted(graph[start] & group)}
    queue = list(paths)
    while start not in paths:
        current = queue.pop(0)
        for target in sorted(graph[current] & group):
            if target not in paths:
                paths[target] = [*paths[current], target]
                queue.append(target)
    return paths[start]


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that importing ``start`` imports, directly or not."""
    seen, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_cycle_check_finds_imports_inside_functions(tmp_path: Path) -> None:
    """The layout lit-kd had: cli.main imported export lazily, export.main imported the CLI class lazily."""
    package = tmp_path / "fake"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text("def main():\n    from fake.export import main as export_main\n")
    (package / "export.py").write_text("def main():\n    from fake.cli import LitKDCLI\n")
    (package / "sub" / "__init__.py").write_text("from .a import A\n")
    (package / "sub" / "a.py").write_text("from ..sub import b\nA = 1\n")
    (package / "sub" / "b.py").write_text("import fake.sub.a\n")
    graph = import_graph(package)
    assert graph["fake.cli"] == {"fake.export"} and graph["fake.export"] == {"fake.cli"}
    assert graph["fake.sub"] == {"fake.sub.a"} and graph["fake.sub.a"] == {"fake.sub.b"}
    assert sorted(import_cycles(graph)) == [
        ["fake.cli", "fake.export", "fake.cli"],
        ["fake.sub.a", "fake.sub.b", "fake.sub.a"],
    ]


def test_lit_kd_modules_import_each_other_without_a_cycle() -> None:
    graph = import_graph(PACKAGE_DIR)
    assert {"lit_kd.cli", "lit_kd.lightning_cli", "lit_kd.export", "lit_kd.born_again", "lit_kd.synthesis"} <= set(
        graph
    )
    assert {"lit_kd.export", "lit_kd.born_again", "lit_kd.synthesis", "lit_kd.lightning_cli"} <= graph["lit_kd.cli"]
    assert import_cycles(graph) == []


def test_only_the_dispatcher_imports_the_commands_and_no_method_imports_the_cli() -> None:
    graph = import_graph(PACKAGE_DIR)
    commands = {"lit_kd.cli", "lit_kd.export", "lit_kd.born_again", "lit_kd.synthesis"}
    assert reachable(graph, "lit_kd.lightning_cli").isdisjoint(commands)
    for name in graph:
        if name == "lit_kd.methods" or name.startswith("lit_kd.methods."):
            assert reachable(graph, name).isdisjoint({"lit_kd.lightning_cli", *commands}), name
    importers = {name for name, targets in graph.items() if targets & {"lit_kd.cli"}}
    assert importers == {"lit_kd.__main__"}
