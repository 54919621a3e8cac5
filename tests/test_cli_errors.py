"""Every user error of the ``mhckit`` command is one line on stderr, exit code 2, no
traceback (issue 12, section 4). A handful run as real subprocesses (the interpreter's own
exit path included); the rest call :func:`mhckit.cli.main` in-process, which reports the
same way and is faster."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mhckit.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--n-layer", "1", "--n-head", "1", "--n-embd", "16", "--block-size", "8",
        "--batch-size", "2", "--max-iters", "1", "--eval-iters", "1", "--sample-tokens", "0",
        "--no-progress"]


@pytest.fixture
def files(tmp_path):
    """Bad inputs on disk: a small, an empty and a Latin-1 dataset, a plain file where a
    directory is expected, a TOML file with a misspelt [compare] field."""
    (tmp_path / "small.txt").write_text("hello world\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes("Cæsar, Brutus — ".encode("latin-1", "replace") * 50)
    (tmp_path / "a_file").write_text("")
    (tmp_path / "misspelt.toml").write_text('[compare]\nmixer = ["mhc"]\n')
    return tmp_path


def assert_one_line_error(code: int, err: str, command: str, expected: str) -> None:
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"mhckit {command}: error: "), err
    assert f"mhckit {command}: error: mhckit" not in err  # no doubled prefix
    assert re.search(expected, lines[0]), (expected, lines[0])


# argv (with {tmp} for the fixture's folder), the text the line must contain
IN_PROCESS = [
    (["train", "--mixer", "kromhc", "--n-streams", "3"], "n_streams=3.*power of two"),
    (["train", "--mixer", "mhc", "--mixer-options", '{"bogus": 1}'], "bogus"),
    (["train", "--mixer", "mhc", "--mixer-options", '{"riemannian": "yes"}'],
     "riemannian must be True or False"),
    (["train", "--mixer", "mhc", "--mixer-options", '[1]'], "--mixer-options.*JSON object"),
    (["train", "--learning-rate", "-1"], "learning_rate"),
    (["train", "--learning-rate", "nan"], "learning_rate"),
    (["train", "--weight-decay", "-1"], "weight_decay"),
    (["train", "--min-lr", "1"], "min_lr must be <= learning_rate"),
    (["train", "--grad-clip", "-1"], "grad_clip"),
    (["train", "--grad-clip", "nan"], "grad_clip"),
    (["train", "--beta2", "2"], "beta2"),
    (["train", "--device", "tpu"], "device"),
    (["train", "--vocab-size", "10"], "unrecognized arguments: --vocab-size"),
    (["train", "--dataset", "{tmp}/small.txt"], "small.txt.*too small for block_size=8"),
    (["train", "--dataset", "{tmp}/empty.txt"], "empty.txt.*is empty"),
    (["train", "--dataset", "{tmp}/missing.txt"], "missing.txt"),
    (["train", "--out", "{tmp}/a_file/run"], "--out.*not a directory"),
    (["train", "--out", "{tmp}/a_file"], "--out.*not a directory"),
    (["train", "--config", "{tmp}/misspelt.toml"], r"unknown \[compare\] fields \['mixer'\]"),
    (["compare", "--mixer", "mhc"], "--mixer does not apply to compare"),
    (["compare", "--mixers", ""], "--mixers must name at least one preset"),
    (["compare", "--mixers", "mhc,residual,mhc"], r"--mixers lists \['mhc'\] more than once"),
    (["compare", "--config", "{tmp}/misspelt.toml"], r"unknown \[compare\] fields"),
    (["compare", "--mixers", "residual", "--mixer-options", '{"s": 2}'],
     r"mixer_options \['s'\] apply to none"),
    (["sample", "{tmp}/missing", "--top-k", "0"], "--top-k must be >= 1"),
    (["sample", "{tmp}/missing", "--temperature", "nan"], "--temperature"),
    (["sample", "{tmp}/missing"], "missing"),
]


@pytest.mark.parametrize("argv, expected", IN_PROCESS,
                         ids=[" ".join(a)[:60] for a, _ in IN_PROCESS])
def test_bad_invocation_is_one_line_and_exit_code_2(argv, expected, files, capsys):
    argv = [a.replace("{tmp}", str(files)) for a in argv]
    command = argv[0]
    extra = [] if command == "sample" else [*TINY, "--out", str(files / "run")]
    try:
        code = main([*argv[:1], *extra, *argv[1:]])
    except SystemExit as stop:  # argparse
        code = stop.code
    assert_one_line_error(code, capsys.readouterr().err, command, expected)
    assert not (files / "run").exists()  # refused before any work


def test_a_full_disk_is_one_line_naming_no_space_left(files, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(files / "run" / "ckpt.pt"))

    monkeypatch.setattr(torch, "save", full)
    code = main(["train", *TINY, "--out", str(files / "run")])
    assert_one_line_error(code, capsys.readouterr().err, "train", "No space left on device")


def test_the_docs_toml_example_with_mixer_options_compares_residual_too(tmp_path, capsys):
    """docs/gpt.md's configuration as written: ``s = 2`` applies to go-mhc, not residual."""
    page = (ROOT / "docs" / "gpt.md").read_text()
    example = re.search(r"```toml\n(.*?)```", page, re.S).group(1)
    assert "mixer_options" in example and '"residual"' in example
    (tmp_path / "docs.toml").write_text(example)
    code = main(["compare", "--config", str(tmp_path / "docs.toml"), *TINY,
                 "--out", str(tmp_path / "cmp")])
    assert code == 0, capsys.readouterr().err
    table = capsys.readouterr().out
    assert re.search(r"^residual ", table, re.M) and re.search(r"^go-mhc ", table, re.M)


def run_cli(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mhckit", *argv], capture_output=True,
                          text=True, env=env, timeout=300, cwd=ROOT, **kwargs)


@pytest.mark.parametrize("argv, expected", [
    (["train", "--mixer", "foo"], "unknown mixer preset 'foo'"),
    (["train", "--dataset", "{tmp}/latin1.txt"], "latin1.txt.*not UTF-8.*offset"),
    (["train", "--max-iters", "x"], "--max-iters.*invalid int value"),
], ids=["unknown-mixer", "not-utf8", "argparse"])
def test_bad_invocation_in_a_real_process(argv, expected, files):
    argv = [a.replace("{tmp}", str(files)) for a in argv]
    result = run_cli(argv[0], *TINY, "--out", str(files / "run"), *argv[1:])
    assert_one_line_error(result.returncode, result.stderr, argv[0], expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line(files, capsys):
    code = main(["train", *TINY, "--device", "cuda", "--out", str(files / "run")])
    assert_one_line_error(code, capsys.readouterr().err, "train",
                          "device 'cuda' is not available")


def test_a_closed_stdout_ends_quietly(tmp_path):
    """``mhckit spectrum | head``: the reader goes away; no BrokenPipeError traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mhckit", "spectrum", "--depth", "1", "--samples", "1",
         "--width", "4", "--lyapunov-samples", "4", "--lyapunov-steps", "1",
         "--out", str(tmp_path / "s.png")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    process.stdout.close()
    err = process.stderr.read().decode()
    process.wait(timeout=300)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
