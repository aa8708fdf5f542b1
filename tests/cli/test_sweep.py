"""The W&B sweep of the pool-size ablation turns into valid LightningCLI commands."""

from __future__ import annotations

import itertools

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from lrsa_seg.cli import main

from ..conftest import TESTS

REPO = TESTS.parent
SWEEP = REPO / "configs" / "sweeps" / "pool_size.yaml"
# main(args) inside pytest: LightningCLI notes that sys.argv holds pytest's arguments.
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter:UserWarning")


def load_sweep() -> dict:
    with open(SWEEP) as f:
        return yaml.safe_load(f)


def agent_command(sweep: dict, values: dict) -> list[str]:
    """The command line the W&B agent runs for one set of values (wandb_agent.Agent._command_run)."""
    sweep_vars = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    sweep_vars["env"] = ["/usr/bin/env"]
    command: list[str] = []
    for item in map(str, sweep["command"]):
        if item.startswith("${") and item.endswith("}"):
            command += sweep_vars.get(item[2:-1]) or []
        else:
            command.append(item)
    return command


def test_sweep_definition() -> None:
    sweep = load_sweep()
    assert sweep["method"] == "grid"
    assert sweep["metric"] == {"name": "val/mIoU", "goal": "maximize"}
    params = sweep["parameters"]
    assert params["model.init_args.pooled_sizes"]["values"] == [8, 16, 32, 48]
    assert len(params["seed_everything"]["values"]) >= 2
    # W&B would pass None as the string "None", which jsonargparse does not read as null.
    assert all(v is not None for p in params.values() for v in p["values"])
    assert "${args}" in sweep["command"]


def grid() -> list[dict]:
    """Every combination of the grid sweep."""
    params = load_sweep()["parameters"]
    return [dict(zip(params, combo)) for combo in itertools.product(*(p["values"] for p in params.values()))]


@pytest.mark.parametrize("values", grid(), ids=lambda v: "-".join(f"{k.rsplit('.', 1)[-1]}{x}" for k, x in v.items()))
def test_every_sweep_combination_is_a_valid_command(
    values: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(REPO)  # the agent runs in the repository root
    sweep = load_sweep()
    command = agent_command(sweep, values)
    assert command[0] == "/usr/bin/env"
    env = [c for c in command[1:] if "=" in c and not c.startswith("-")]
    assert "WANDB_MODE=online" in env  # else lrsa-seg defaults W&B to offline and the sweep sees nothing
    program = command[1 + len(env) :]
    assert program[:2] == ["lrsa-seg", "fit"]
    assert f"--model.init_args.pooled_sizes={values['model.init_args.pooled_sizes']}" in program

    with pytest.raises(SystemExit) as exit_:
        main([*program[1:], "--print_config"])
    assert exit_.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["init_args"]["pooled_sizes"] == values["model.init_args.pooled_sizes"]
    assert config["seed_everything"] == values["seed_everything"]
    # Every run reports to W&B online and keeps its checkpoints in its own W&B run folder.
    (wandb_logger,) = [lg for lg in config["trainer"]["logger"] if lg["class_path"].endswith("WandbLogger")]
    assert not wandb_logger["init_args"]["offline"] and wandb_logger["init_args"]["name"] is None
    checkpoints = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert {c["init_args"]["filename"] for c in checkpoints} == {"best", "last"}
    assert all(c["init_args"]["dirpath"] is None for c in checkpoints)
