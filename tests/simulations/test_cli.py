"""The command-line convention of every ``python -m simulations.<study>`` (simulations/common/cli.py):
every flag shows its default, the shared flags exist, falsy values are kept, bad values end in one
``error:`` line with exit code 2, and an existing output file is never replaced without --overwrite."""

import hashlib
import importlib
import re

import numpy as np
import pytest

import particles
from simulations.common import cli

STUDIES = (
    "attention_lipschitz",
    "block_curvature",
    "critical_points",
    "curvature_flow",
    "dataset_convergence",
    "hessian_growth",
    "hessian_heterogeneity",
    "histograms",
    "loss_landscape",
    "mean_field",
    "metastability",
    "movie",
    "phase_diagram",
    "size_sweep",
    "training_curvature",
)
SHARED = {"--full", "--out", "--overwrite", "--no-progress", "--threads"}
#: studies that draw no random numbers have no --seed
NO_SEED = {"histograms"}


def _module(name):
    return importlib.import_module(f"simulations.{name}" if name != "movie" else "simulations.movie.study")


def _options(parser):
    return [a for a in parser._actions if a.option_strings and a.option_strings[0] != "-h"]


@pytest.mark.parametrize("name", STUDIES)
def test_help_shows_every_default_and_the_shared_flags(name, capsys):
    module = _module(name)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m simulations.{name} ")
    assert "Time on the 2-core development machine (one idle core):" in text
    for word in ("theory note", "issue 1", "(default: None)", "default None"):
        assert word not in text
    parser = module.build_parser()
    flags = {a.option_strings[0] for a in _options(parser)}
    assert SHARED <= flags
    assert ("--seed" in flags) == (name not in NO_SEED)
    formatter = parser._get_formatter()
    for action in _options(parser):
        shown = " ".join(formatter._expand_help(action).split())
        assert "default" in shown, (action.option_strings[0], shown)
        assert shown in " ".join(text.split())  # the line really printed by --help


def test_full_dependent_defaults_print_once_and_resolve():
    from simulations import phase_diagram

    parser = phase_diagram.build_parser()
    text = " ".join(parser.format_help().split())
    assert "systems per beta (default 512; --full: 2048)" in text
    assert text.count("--full: 2048") == 1
    assert parser.parse_args([]).batch == 512
    assert parser.parse_args(["--full"]).batch == 2048
    assert parser.parse_args(["--full", "--batch", "3"]).batch == 3  # given wins over --full


def test_falsy_values_are_taken_as_given():
    from simulations import hessian_growth, loss_landscape, metastability, movie, phase_diagram

    config = loss_landscape.config_from_args(loss_landscape.parse_args(["--train-steps", "0", "--seed", "0"]))
    assert (config.train_steps, config.model_seed, config.points) == (0, 0, ("init",))
    args = hessian_growth.parse_args(["--residual-scaling", "0", "--seed", "0"])
    config = hessian_growth.config_from_args(args)
    assert (config.residual_scaling, config.model_seed, config.attention) == (0.0, 0, "softmax")
    config = phase_diagram.config_from_args(phase_diagram.parse_args(["--betas", "0", "0", "1", "--seed", "0"]))
    assert config.betas == (0.0,) and config.ensemble.seed == 0
    assert metastability.make_config(metastability.parse_args(["--betas", "0", "--dt", "0.5"])).betas == (0.0,)
    assert movie.parse_args(["--system", "0"]).system == 0


BAD = {
    "attention_lipschitz": ["--n", "1"],
    "block_curvature": ["--batch", "0"],
    "critical_points": ["--t-max", "inf"],
    "curvature_flow": ["--every", "0"],
    "dataset_convergence": ["--samples", "1"],
    "hessian_growth": ["--num-sigmas", "2.5"],
    "hessian_heterogeneity": ["--d-model", "-3"],
    "histograms": ["--bins", "many"],
    "loss_landscape": ["--lr", "0"],
    "mean_field": ["--M", "0"],
    "metastability": ["--t-max", "nan"],
    "movie": ["--fps", "0"],
    "phase_diagram": ["--batch", "0"],
    "size_sweep": ["--d-models", "8", "x"],
    "training_curvature": ["--steps", "0"],
}


@pytest.mark.parametrize("name", STUDIES)
def test_bad_values_end_in_one_error_line_with_exit_code_2(name, capsys, tmp_path):
    module = _module(name)
    for argv in (BAD[name], ["--threads", "0"], ["--seed", "-1"] if name not in NO_SEED else ["--no-such-flag"]):
        with pytest.raises(SystemExit) as exit_:
            module.main(argv + ["--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and f"python -m simulations.{name}: error:" in lines[0], err
        assert argv[0] in lines[0], err
    assert not any(tmp_path.iterdir())  # nothing computed or written


def _stored_run(path):
    params = particles.SimulationParams(beta=1.0, t_max=0.2, dt=0.1)
    xs = np.stack([particles.sample_sphere(4, 3, batch=2, seed=s) for s in range(3)])
    particles.io.save(path, particles.Trajectory(ts=params.step_grid()[0], xs=xs, params=params))
    return path


#: extra arguments of the existing-output test (small sizes; nothing is computed before the refusal)
TINY = {
    "curvature_flow": ["--n", "4", "--d", "3", "--batch", "2", "--t-max", "1"],
    "phase_diagram": ["--betas", "1", "2", "2", "--batch", "2", "--n", "4"],
    "metastability": ["--betas", "1", "--batch", "2", "--n", "4", "--t-max", "2"],
}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", STUDIES)
def test_an_existing_output_keeps_its_checksum_without_overwrite(name, tmp_path, capsys):
    module = _module(name)
    argv = TINY.get(name, []) + ["--out", str(tmp_path / "out"), "--no-progress"]
    if name in ("curvature_flow", "movie"):
        argv += ["--from", str(_stored_run(tmp_path / "run.h5"))]
    path, outputs = module.output_paths(module.build_parser().parse_args(argv))
    for output in outputs:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(np.random.default_rng(0).bytes(1000))
    before = {output: _sha(output) for output in outputs}
    run_before = _sha(path) if path.exists() else None
    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"error: .* exists.*--overwrite", err), err
    assert {output: _sha(output) for output in outputs} == before
    assert (_sha(path) if path.exists() else None) == run_before  # the results file untouched (or not made)


def test_overwrite_replaces_a_figure_and_the_phase_diagram_bar_counts_steps(tmp_path, capsys):
    from simulations import phase_diagram

    argv = TINY["phase_diagram"] + ["--out", str(tmp_path), "--t-max", "1", "--checkpoints", "3"]
    _, (png,) = phase_diagram.output_paths(phase_diagram.parse_args(argv))
    png.write_bytes(b"old")
    phase_diagram.main(argv + ["--overwrite"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    # one bar over the time steps of all betas: 2 betas x 10 steps of dt = 0.1 up to t = 1
    assert re.search(r"100%.* 20(\.0)?/20(\.0)? ", capsys.readouterr().err)


def test_set_threads_changes_numba_and_torch():
    import numba
    import torch

    before = numba.get_num_threads(), torch.get_num_threads()
    try:
        cli.set_threads(1)
        assert (numba.get_num_threads(), torch.get_num_threads()) == (1, 1)
    finally:
        numba.set_num_threads(before[0])
        torch.set_num_threads(before[1])


def test_validators_take_zero_and_refuse_what_is_out_of_range():
    import argparse

    assert cli.integer(0)("0") == 0 and cli.real(0.0)("0") == 0.0 and cli.real()("-0.5") == -0.5
    for parse, text in (
        (cli.integer(1), "0"),
        (cli.integer(0), "1.5"),
        (cli.integer(0, 3), "4"),
        (cli.real(), "inf"),
        (cli.real(), "nan"),
        (cli.real(above=0.0), "0"),
        (cli.real(0.0), "x"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text))):
            parse(text)


def test_every_study_follows_the_convention():
    # A new study (a module with a main) must join STUDIES, and so every test above.
    from pathlib import Path

    import simulations

    folder = Path(simulations.__file__).parent
    found = {p.stem for p in folder.glob("*.py") if "\ndef main(" in p.read_text()}
    assert found | {"movie"} == set(STUDIES)
