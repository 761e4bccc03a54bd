"""Deployment files: both Docker images, the SLURM script, the DDP overlay and the W&B sweep.

No Docker, SLURM or GPU is needed: the Dockerfiles are read with Docker's own parser, the sbatch script runs
against a stand-in `srun`, and the overlay's SLURM requeue / resume runs for real on CPU under a faked SLURM
environment (the trainer-construction and signal-handling code Lightning runs on a cluster).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import dockerfile
import lightning.pytorch as pl
import pytest
import yaml
from lightning.fabric.utilities.device_parser import _normalize_parse_gpu_string_input
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from seqlit.cli import BASE_CONFIG, SeqlitCLI, main

REPO = Path(__file__).resolve().parents[1]
GPU_IMAGE = REPO / "docker/Dockerfile"
CPU_IMAGE = REPO / "docker/Dockerfile.cpu"
SBATCH = REPO / "docker/slurm/train.sbatch"
OVERLAY = REPO / "configs/cluster/ddp_gpu.yaml"
SWEEP = REPO / "configs/sweeps/japanese_vowels_gru.yaml"
JV_GRU = REPO / "configs/japanese_vowels_gru.yaml"
RECIPES = sorted((REPO / "configs").glob("*.yaml"))
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
JOB_ID = "4242"
# What srun sets in each task of a one-node, one-task job (and sbatch in the job).
ONE_TASK_SLURM_JOB = {
    "SLURM_JOB_ID": JOB_ID, "SLURM_JOB_NAME": "seqlit", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_NNODES": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
    "SLURM_NODELIST": "localhost",
}


# ---- Docker images --------------------------------------------------------------------------------------


def test_gpu_image_starts_from_a_cuda_runtime_image_matching_the_torch_wheel() -> None:
    commands = dockerfile.parse_file(str(GPU_IMAGE))
    image = _base_image(commands)
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", image)
    assert match, f"not a CUDA runtime image: {image}"
    major, minor = match.group(1), match.group(2)
    assert _arg_defaults(commands)["TORCH_CUDA"] == f"cu{major}{minor}", "torch's CUDA differs from the image's"


def test_cpu_image_starts_from_python_slim() -> None:
    assert re.fullmatch(r"python:3\.1[0-9]-slim", _base_image(dockerfile.parse_file(str(CPU_IMAGE))))


@pytest.mark.parametrize(
    ("path", "torch_index"),
    [(GPU_IMAGE, "https://download.pytorch.org/whl/${TORCH_CUDA}"),
     (CPU_IMAGE, "https://download.pytorch.org/whl/cpu")],
    ids=["cuda", "cpu"],
)
def test_torch_then_dependencies_then_the_package_from_the_copied_source(path: Path, torch_index: str) -> None:
    commands = dockerfile.parse_file(str(path))
    runs = [(i, " ".join(c.value)) for i, c in enumerate(commands) if c.cmd == "RUN"]
    torch_runs = [i for i, shell in runs if re.search(r"pip install \S*torch==", shell) and torch_index in shell]
    package_runs = [i for i, shell in runs if re.search(r"pip install (--?[\w-]+(=\S+)? )*\.(\s|$)", shell)]
    source_copies = [i for i, c in enumerate(commands) if c.cmd == "COPY" and c.value[0] == "."]
    assert len(torch_runs) == 1 and len(package_runs) == 1 and len(source_copies) == 1, (torch_runs, package_runs)
    torch_run, package_run, source_copy = torch_runs[0], package_runs[0], source_copies[0]
    assert torch_run < source_copy < package_run
    package_shell = " ".join(commands[package_run].value)
    assert not re.search(r"pip install[^&]*(-e|--editable)\b", package_shell), "the image must not depend on /app"
    # pip runs where the source was copied to.
    workdir = [c.value[0] for c in commands[:package_run] if c.cmd == "WORKDIR"][-1]
    assert commands[source_copy].value[-1].rstrip("/") == workdir.rstrip("/")
    # Torch is pinned to a version the project accepts, and nothing later may replace it.
    torch_version = _arg_defaults(commands)["TORCH_VERSION"]
    torch_requirement = next(d for d in _project()["dependencies"] if re.match(r"torch\b", d))
    assert Version(torch_version) in SpecifierSet(torch_requirement.removeprefix("torch"))
    assert any(c.cmd == "ENV" and "PIP_CONSTRAINT" in c.value for c in commands[torch_run:package_run])


@pytest.mark.parametrize("path", [GPU_IMAGE, CPU_IMAGE], ids=["cuda", "cpu"])
def test_image_runs_the_seqlit_cli_as_a_non_root_user(path: Path) -> None:
    commands = dockerfile.parse_file(str(path))
    entrypoints = [c for c in commands if c.cmd == "ENTRYPOINT"]
    assert len(entrypoints) == 1 and entrypoints[0].json and entrypoints[0].value == ("seqlit",)
    assert "seqlit" in _project()["scripts"], "the entry point is the console script pyproject.toml installs"
    cmd = [c for c in commands if c.cmd == "CMD"][-1]
    assert cmd.json and cmd.value == ("--help",)
    users = [c.value[0] for c in commands if c.cmd == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert not any(c.cmd == "ENV" and "WANDB_MODE" in c.value for c in commands)


def test_dockerignore_keeps_sources_and_configs_but_not_local_state() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions are not modelled here"
    for needed in ("pyproject.toml", "README.md", "seqlit/cli.py", "seqlit/data/bucketing.py",
                   "configs/japanese_vowels_gru.yaml", "configs/cluster/ddp_gpu.yaml", "examples/g2p_words.txt"):
        assert not _dockerignored(needed, patterns), needed
    for local in (".venv/bin/python", ".git/HEAD", "runs/x/version_0/metrics.csv", "lightning_logs/v/x",
                  "wandb/run/x", "seqlit/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v", ".hypothesis/x"):
        assert _dockerignored(local, patterns), local


# ---- SLURM script ---------------------------------------------------------------------------------------


def test_sbatch_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_sbatch_asks_for_one_task_per_gpu_and_a_requeue_signal_every_rank_receives() -> None:
    directives = _sbatch_directives(SBATCH.read_text())
    gpus = int(re.fullmatch(r"gpu:(?:\w+:)?(\d+)", directives["--gres"]).group(1))  # type: ignore[union-attr]
    assert int(directives["--ntasks-per-node"]) == gpus
    assert "--ntasks" not in directives, "Lightning rejects --ntasks without --ntasks-per-node"
    # Without the B: prefix SLURM signals the srun tasks, where Lightning's handler runs (not the batch shell).
    signal_spec = re.fullmatch(r"(?:SIG)?USR1@(\d+)", directives["--signal"])
    assert signal_spec and int(signal_spec.group(1)) >= 60, directives["--signal"]
    assert "--requeue" in directives and directives["--open-mode"] == "append"


def test_sbatch_launches_seqlit_fit_with_the_overlay_and_a_run_dir_stable_across_requeues(tmp_path: Path) -> None:
    argv_first = _run_sbatch(tmp_path, restart_count="0", extra=["--trainer.max_epochs", "3"])
    argv_requeued = _run_sbatch(tmp_path, restart_count="1", extra=["--trainer.max_epochs", "3"])
    assert argv_first == argv_requeued, "a requeued job must resume from the same default_root_dir"
    srun_options, command = argv_first[: argv_first.index("seqlit")], argv_first[argv_first.index("seqlit"):]
    assert all(option.startswith("-") for option in srun_options)
    options = _pairs(command[2:])
    assert command[:2] == ["seqlit", "fit"]
    assert [value for key, value in options if key == "--config"] == [
        "configs/japanese_vowels_gru.yaml", "configs/cluster/ddp_gpu.yaml"]
    assert (REPO / "configs/cluster/ddp_gpu.yaml").is_file()
    settings = dict(options)
    assert settings["--trainer.devices"] == "4" and settings["--trainer.num_nodes"] == "2"
    assert settings["--trainer.default_root_dir"] == f"runs/slurm/{JOB_ID}"
    assert (tmp_path / "work" / f"runs/slurm/{JOB_ID}").is_dir()
    assert settings["--trainer.max_epochs"] == "3", "extra sbatch arguments reach seqlit fit"
    # Any --ckpt_path would win over Lightning's hpc checkpoint and defeat the resume.
    assert not any(arg.startswith("--ckpt_path") for arg in command)
    env = dict(line.split("=", 1) for line in (tmp_path / "srun.env").read_text().splitlines() if "=" in line)
    assert env["WANDB_RUN_ID"] == f"slurm-{JOB_ID}" and env["OMP_NUM_THREADS"] == "1"


def test_sbatch_command_line_parses_and_sets_trainer_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv = _run_sbatch(tmp_path, restart_count="0", extra=[])
    command = argv[argv.index("seqlit") + 1:]
    monkeypatch.chdir(REPO)  # the script runs from the submit directory, a checkout
    trainer = _printed_config(capsys, [*command, "--print_config"])["trainer"]
    # "4" (a string, as jsonargparse keeps it) is a count of four GPUs to Lightning; "4," would be GPU 4.
    assert (_normalize_parse_gpu_string_input(str(trainer["devices"])), trainer["num_nodes"]) == (4, 2)
    assert trainer["default_root_dir"] == f"runs/slurm/{JOB_ID}"


# ---- the DDP overlay ------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_cluster_overlay_composes_with_every_recipe(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _printed_config(capsys, ["fit", "--config", str(recipe), "--config", str(OVERLAY), "--print_config"])
    trainer = config["trainer"]
    assert trainer["strategy"]["class_path"] == "lightning.pytorch.strategies.DDPStrategy"
    ddp = trainer["strategy"]["init_args"]
    assert ddp["find_unused_parameters"] is False and ddp["gradient_as_bucket_view"] is True
    [plugin] = trainer["plugins"]
    assert plugin["class_path"] == "lightning.pytorch.plugins.environments.SLURMEnvironment"
    assert plugin["init_args"] == {"auto_requeue": True, "requeue_signal": "SIGUSR1"}
    assert (trainer["accelerator"], trainer["precision"]) == ("gpu", "bf16-mixed")
    # seqlit's samplers split data by rank from the DistributedSampler Lightning injects.
    assert trainer["use_distributed_sampler"] is True
    # The overlay is trainer-only: the recipe's model, data and training schedule come through unchanged.
    own = yaml.safe_load(recipe.read_text())
    assert config["model"]["class_path"] == own["model"]["class_path"]
    assert config["data"]["class_path"] == own["data"]["class_path"]
    for key in ("max_epochs", "max_steps", "gradient_clip_val"):
        if key in own["trainer"]:
            assert trainer[key] == own["trainer"][key], key
    # ... and so do the callbacks of the shared base (the recipe states none of its own).
    base = yaml.safe_load(BASE_CONFIG.read_text())
    assert [c["class_path"] if isinstance(c, dict) else c for c in trainer["callbacks"]] == [
        c["class_path"] if isinstance(c, dict) else c for c in base["trainer"]["callbacks"]
    ]


def test_overlay_builds_a_ddp_trainer_in_the_slurm_environment(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    _fake_slurm_job(monkeypatch, tmp_path)
    # A GPU-less stand-in for the cluster: only the accelerator and precision differ from the overlay.
    cli = SeqlitCLI(args=["--config", str(JV_GRU), "--config", str(OVERLAY), "--trainer.accelerator=cpu",
                          "--trainer.devices=1", "--trainer.precision=32-true", "--trainer.logger=false"], run=False)
    assert isinstance(cli.trainer.strategy, DDPStrategy)
    assert cli.trainer.strategy._ddp_kwargs["find_unused_parameters"] is False
    assert cli.trainer.strategy._ddp_kwargs["gradient_as_bucket_view"] is True
    environment = cli.trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment)
    assert environment.auto_requeue and environment.requeue_signal == signal.SIGUSR1
    assert environment.main_port == 15000 + int(JOB_ID[-4:])  # the same after a requeue: same job id


def test_overlay_requeues_on_sigusr1_and_the_next_fit_resumes_from_the_hpc_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scontrol_log = _fake_slurm_job(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    args = ["--config", str(JV_GRU), "--config", str(OVERLAY), "--trainer.accelerator=cpu", "--trainer.devices=1",
            "--trainer.strategy=auto", "--trainer.precision=32-true",
            f"--trainer.default_root_dir={run_dir}", "--trainer.max_steps=6", "--trainer.limit_train_batches=4",
            "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0", "--test_after_fit=false",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir=runs", *QUIET]

    # The job hits its time limit: SLURM sends SIGUSR1 after the third step.
    interrupted = SeqlitCLI(args=args, run=False)
    interrupted.trainer.callbacks.append(_SignalAfterStep(3, signal.SIGUSR1))
    checkpoint_log, lines = logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector"), []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    checkpoint_log.addHandler(handler)
    try:
        interrupted.trainer.fit(interrupted.model, datamodule=interrupted.datamodule)
    finally:
        checkpoint_log.removeHandler(handler)
    assert not [line for line in lines if "weights_only" in line]  # Lightning's hpc save is told weights_only
    assert scontrol_log.read_text().split() == ["requeue", JOB_ID]
    assert sorted(p.name for p in run_dir.glob("hpc_ckpt_*.ckpt")) == ["hpc_ckpt_1.ckpt"]
    assert interrupted.trainer.global_step == 3

    # The requeued job runs the same `seqlit fit` command line, without --ckpt_path.
    resumed = SeqlitCLI(args=["fit", *args])
    assert resumed.trainer.ckpt_path == str(run_dir / "hpc_ckpt_1.ckpt")
    assert resumed.trainer.global_step == 6


# ---- the W&B sweep --------------------------------------------------------------------------------------


def test_sweep_parameters_are_cli_options_and_reach_the_resolved_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = yaml.safe_load(SWEEP.read_text())
    picks = {name: _sample(spec) for name, spec in sweep["parameters"].items()}
    command = _agent_command(sweep, picks)
    assert command[:3] == ["/usr/bin/env", "seqlit", "fit"]
    monkeypatch.chdir(REPO)  # `wandb agent` is started from the repository root
    config = _printed_config(capsys, [*command[2:], "--print_config"])
    for name, value in picks.items():
        resolved: Any = config
        for key in name.split("."):
            resolved = resolved[key]
        assert resolved == pytest.approx(value), name
    loggers = [logger["class_path"] for logger in config["trainer"]["logger"]]
    assert "lightning.pytorch.loggers.WandbLogger" in loggers
    wandb_logger = next(lg for lg in config["trainer"]["logger"] if lg["class_path"].endswith("WandbLogger"))
    assert wandb_logger["init_args"]["project"] == sweep["project"], "runs would land outside the sweep's project"


def test_sweep_metric_is_logged_by_validation_and_hyperband_fits_the_schedule(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = yaml.safe_load(SWEEP.read_text())
    monkeypatch.chdir(tmp_path)
    cli = SeqlitCLI(args=["--config", str(JV_GRU), "--trainer.logger=false", "--trainer.limit_val_batches=2",
                          *QUIET], run=False)
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    assert sweep["metric"]["name"] in cli.trainer.callback_metrics
    assert sweep["metric"]["goal"] == "maximize" and sweep["metric"]["name"].endswith("acc")
    assert sweep["early_terminate"]["min_iter"] < yaml.safe_load(JV_GRU.read_text())["trainer"]["max_epochs"]


# ---- helpers --------------------------------------------------------------------------------------------


class _SignalAfterStep(pl.Callback):
    """Sends `signum` to this process once `step` optimizer steps are done, then stops the fit."""

    def __init__(self, step: int, signum: signal.Signals) -> None:
        self.step = step
        self.signum = signum

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)  # Python runs the handler before the next bytecode
            trainer.should_stop = True  # in SLURM, `scontrol requeue` ends the job


def _fake_slurm_job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """SLURM's task variables plus an `scontrol` on PATH that records its arguments; returns the record."""
    for name in [n for n in os.environ if n.startswith("SLURM_")] + ["MASTER_PORT", "MASTER_ADDR"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in ONE_TASK_SLURM_JOB.items():
        monkeypatch.setenv(name, value)
    record = tmp_path / "scontrol.args"
    _stand_in(tmp_path / "bin" / "scontrol", f'echo "$@" >> "{record}"')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    record.touch()
    return record


def _run_sbatch(tmp_path: Path, restart_count: str, extra: list[str]) -> list[str]:
    """Runs the batch script as sbatch would on 2 nodes x 4 GPUs, with a stand-in srun; returns srun's argv."""
    argv_file, env_file = tmp_path / "srun.argv", tmp_path / "srun.env"
    _stand_in(tmp_path / "bin" / "srun", f'printf "%s\\n" "$@" > "{argv_file}"; env > "{env_file}"')
    (tmp_path / "work").mkdir(exist_ok=True)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("SLURM_", "WANDB_", "CONFIG", "RUN_DIR", "VENV", "OMP_"))}
    env.update(PATH=f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}", SLURM_JOB_ID=JOB_ID, SLURM_NNODES="2",
               SLURM_NTASKS_PER_NODE="4", SLURM_RESTART_COUNT=restart_count, SLURM_SUBMIT_DIR=str(tmp_path / "work"),
               VENV=str(tmp_path / "no-venv"))
    result = subprocess.run(["bash", str(SBATCH), *extra], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return argv_file.read_text().splitlines()


def _stand_in(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _printed_config(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict[str, Any]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    assert exit_info.value.code in (0, None), captured.err
    return yaml.safe_load(captured.out)


def _agent_command(sweep: dict[str, Any], picks: dict[str, Any]) -> list[str]:
    """The command line `wandb agent` runs for `picks`, expanded with wandb's own macro function."""
    macros = create_sweep_command_args({"args": {name: {"value": value} for name, value in picks.items()}})
    macros.update(env=["/usr/bin/env"], program=[sweep.get("program", "")], interpreter=["python"])
    command: list[str] = []
    for part in map(str, sweep["command"]):
        command += macros[part[2:-1]] if part.startswith("${") and part.endswith("}") else [part]
    return command


def _sample(spec: dict[str, Any]) -> Any:
    """A value the sweep could pick, away from the recipe's defaults where there is a choice."""
    if "values" in spec:
        return spec["values"][-1]
    if "value" in spec:
        return spec["value"]
    low, high = spec["min"], spec["max"]
    if spec.get("distribution", "").startswith(("log_uniform", "q_log")):
        return (low * high) ** 0.5
    if isinstance(low, int) and isinstance(high, int):
        return (low + high) // 2
    return (low + high) / 2


def _base_image(commands: tuple[dockerfile.Command, ...]) -> str:
    """The final stage's base image with the ARG defaults declared before FROM substituted."""
    image = [c.value[0] for c in commands if c.cmd == "FROM"][-1]
    return re.sub(r"\$\{?(\w+)\}?", lambda m: _arg_defaults(commands)[m.group(1)], image)


def _arg_defaults(commands: tuple[dockerfile.Command, ...]) -> dict[str, str]:
    pairs = (c.value[0].split("=", 1) for c in commands if c.cmd == "ARG" and "=" in c.value[0])
    return {name: value.strip('"') for name, value in pairs}


def _project() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _sbatch_directives(script: str) -> dict[str, str]:
    """`#SBATCH --key=value` / `#SBATCH --flag` lines before the first command, as {--key: value or ""}."""
    directives: dict[str, str] = {}
    for line in script.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break  # sbatch stops reading directives at the first command
        if line.startswith("#SBATCH"):
            key, _, value = line.removeprefix("#SBATCH").split("#")[0].strip().partition("=")
            directives[key] = value
    return directives


def _pairs(args: list[str]) -> list[tuple[str, str]]:
    """`--key value` and `--key=value` arguments as (key, value) pairs."""
    pairs, index = [], 0
    while index < len(args):
        key, equals, value = args[index].partition("=")
        if equals:
            pairs.append((key, value))
            index += 1
        else:
            pairs.append((key, args[index + 1]))
            index += 2
    return pairs


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the build context (a pattern on a folder covers its contents)."""
    def regex(pattern: str) -> str:
        out = re.escape(pattern.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        return out.replace(r"\?", "[^/]")
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(re.fullmatch(regex(p), prefix) for p in patterns for prefix in prefixes)


if sys.platform == "win32":  # pragma: no cover - the sbatch tests need bash and POSIX signals
    pytestmark = pytest.mark.skip("POSIX only")
