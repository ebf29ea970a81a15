"""``pip install -e .`` alone is enough to train: every package the library imports is an install requirement, and
none is a test tool (pytest belongs to the ``dev`` extra, for the tests only)."""
import ast
import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DISTRIBUTION_OF = {"PIL": "pillow", "yaml": "pyyaml"}  # import name -> the name pip installs it by


def install_requires():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = parser["options"]["install_requires"].split()
    return {re.split(r"[<>=!~;\[ ]", line)[0].lower() for line in lines if line}


def imported_top_level_modules():
    """Absolute imports anywhere in the package (function-level ones too), by top-level module."""
    modules = {}
    for path in (REPO / "cardiac_dreamer").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                modules.setdefault(name.split(".")[0], path.relative_to(REPO))
                if name.startswith("torch.utils.tensorboard"):
                    modules.setdefault("tensorboard", path.relative_to(REPO))
    return modules


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is new in Python 3.10")
def test_every_package_the_library_imports_is_an_install_requirement():
    required = install_requires()
    third_party = {module: where for module, where in imported_top_level_modules().items()
                   if module not in sys.stdlib_module_names and module != "cardiac_dreamer"}
    missing = {module: str(where) for module, where in third_party.items()
               if DISTRIBUTION_OF.get(module, module).lower() not in required}
    assert missing == {}
    assert "pytest" not in third_party and "pytest" not in required


def test_the_public_names_are_listed_for_tab_completion_before_first_use():
    code = ("import cardiac_dreamer; names = dir(cardiac_dreamer); "
            "assert set(cardiac_dreamer.__all__) <= set(names), names; "
            "assert 'import_module' not in names; import sys; assert 'cardiac_dreamer.training' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command, flags, expected", [
    ("train", ["--data_dir", "{tmp}/absent", "--output_dir", "{tmp}/out"], "data directory not found"),
    ("evaluate", ["--checkpoint", "{tmp}/run.ckpt", "--navigate", "--history", "0,-4"], "history values must be >= 0"),
    ("evaluate", ["--checkpoint", "{tmp}/run.ckpt", "--help"], "--planner"),
    ("evaluate", ["--checkpoint", "{tmp}/run.ckpt", "--navigate", "--history", "65"], "session history must be"),
    ("evaluate", ["--checkpoint", "{tmp}/run.ckpt"], "run.ckpt: checkpoint not found"),
    ("evaluate", ["--checkpoint", "{tmp}", "--navigate"], "a directory that holds no run's checkpoints"),
])
def test_the_commands_answer_help_and_mistakes_without_loading_torch(tmp_path, command, flags, expected):
    """A mistyped path or flag, and --help, are answered in a fraction of a second (importing torch takes seconds):
    a command loads torch only once there is something to train or evaluate."""
    code = (f"import sys; from cardiac_dreamer.cli.{command}_command import main; sys.argv[1:] = sys.argv[2:]\n"
            "try:\n    code = main()\nexcept SystemExit as stop:\n    code = stop.code\n"
            "assert 'torch' not in sys.modules, 'torch was loaded'; sys.exit(code)")
    argv = [flag.format(tmp=tmp_path) for flag in flags]
    result = subprocess.run([sys.executable, "-c", code, f"cardiac-{command}", *argv], capture_output=True, text=True)
    assert "torch was loaded" not in result.stderr
    assert expected in result.stdout + result.stderr, result.stderr
    assert result.returncode == (0 if "--help" in flags else 2), result.stderr


def test_the_guides_quick_start_script_trains_on_data_processed_from_a_checkout(phantom_dir, tmp_path):
    # the guide's scripts/run_channel.sh is bin/run_channel.sh: data/processed into outputs/, extra flags passed on
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "processed").symlink_to(phantom_dir)
    script = Path(__file__).resolve().parents[1] / "bin" / "run_channel.sh"
    result = subprocess.run([str(script), "--check_data"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"data directory: {phantom_dir.resolve()}" in result.stdout + result.stderr
    batch = script.with_name("run_training.bat").read_bytes()
    assert "--token_type channel" in script.read_text() and b"--token_type channel" in batch
    assert batch.count(b"\n") == batch.count(b"\r\n")  # cmd.exe misreads batch files with bare LF line ends
