"""The README's recipe that trains the cine methods and compares them: run as a shell script with ``python`` and
``samzoo`` recorded instead of executed, every command must name existing configs that build the intended network,
evaluate where it trained, and write the reports that its ``samzoo compare`` line reads."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from monai.bundle import ConfigParser
from samzoo.cli import _as_list
from samzoo.metrics.comparison import parse_runs

REPO = Path(__file__).resolve().parents[1]


def _recipe(tmp_path: Path) -> list[list[str]]:
    """The commands of the README's "Comparing methods" block, in order, as argument lists."""
    section = (REPO / "README.md").read_text().split("## Comparing methods", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    log = tmp_path / "commands.jsonl"
    record = f'"{sys.executable}" -c "import json, sys; print(json.dumps(sys.argv[1:]))"'
    stubs = f'python() {{ {record} python "$@" >> "{log}"; }}; samzoo() {{ {record} samzoo "$@" >> "{log}"; }}\n'
    subprocess.run(["bash", "-euc", stubs + block], cwd=REPO, check=True)
    return [json.loads(line) for line in log.read_text().splitlines()]


def _options(command: list[str]) -> dict[str, str]:
    flags = [i for i, arg in enumerate(command) if arg.startswith("--")]
    return {command[i][2:]: command[i + 1] for i in flags}


def test_readme_recipe_trains_evaluates_and_compares_the_cine_methods(tmp_path):
    commands = _recipe(tmp_path)
    prepare, *bundle_runs, compare = commands
    assert prepare[:3] == ["samzoo", "prepare", "acdc"] and compare[:2] == ["samzoo", "compare"]
    dataset = prepare[4]
    evaluated: dict[str, dict] = {}
    trained: dict[str, tuple[str, str]] = {}
    for command in bundle_runs:
        assert command[:4] == ["python", "-m", "monai.bundle", "run"]
        options = _options(command)
        files = ast.literal_eval(options["config_file"])
        assert all((REPO / f).is_file() for f in files), files
        assert options["dataset_dir"] == dataset and options["ckpt_dir"] == options["output_dir"] + "/models"
        parser = ConfigParser()
        parser.read_config([str(REPO / f) for f in files])
        network = parser["network_def"]["_target_"]
        if any(f.endswith("evaluate.json") for f in files):
            # evaluation comes after its training, in the same folders, with the same network
            assert trained[options["output_dir"]] == (network, parser["variant"])
            evaluated[options["output_dir"]] = {"network": network, "variant": parser["variant"], "files": files}
        else:
            assert files[-1].endswith("train.json") or "variants" in files[-1]
            trained[options["output_dir"]] = (network, parser["variant"])
    assert set(evaluated) == set(trained)
    networks = {run["network"].rsplit(".", 1)[-1] for run in evaluated.values()}
    assert networks == {"Framewise", "DynUNet", "RecurrentUNet", "CMR2DTSAM"}

    options = _options(compare)
    assert options["datalist"] == f"{dataset}/datalist.json"
    runs = parse_runs(_as_list(options["runs"]))
    assert sorted(str(run.report) for run in runs) == sorted(evaluated)
    for run in runs:
        report = evaluated[str(run.report)]
        assert any(f"bundles/{run.bundle}/configs/" in f for f in report["files"])
        if run.bundle == "cine_baselines":
            assert report["variant"] == run.variant
        else:
            assert any(f.endswith(f"variants/{run.variant}.json") for f in report["files"])
