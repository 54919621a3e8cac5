"""``mhckit spectrum``: help, a small run, the PNG and the printed numbers."""

import argparse

import pytest

from mhckit.cli import build_parser, main, spectrum
from mhckit.cli.spectrum import measure

SMALL = ["spectrum", "--depth", "3", "--streams", "4", "--width", "8", "--samples", "1",
         "--lyapunov-samples", "50", "--lyapunov-steps", "20"]


def test_spectrum_help_lists_its_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["spectrum", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--mixer", "--depth", "--streams", "--out", "--seed", "--init"):
        assert flag in text


@pytest.mark.parametrize("mixer, init", [("mhc", "random"), ("jpmhc", "random")])
def test_spectrum_writes_a_png_and_prints_predicted_and_measured_moments(
        tmp_path, capsys, mixer, init):
    out = tmp_path / "spectrum.png"
    assert main(SMALL + ["--mixer", mixer, "--init", init, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "m1(JJᵀ)  predicted" in text and "λ⊥" in text
    if mixer == "jpmhc":  # random orthogonal H_res does not fix 1: moments only
        assert "no density prediction" in text


def test_report_of_unit_marginal_mixers_predicts_the_atoms_seen():
    args = build_parser().parse_args(SMALL + ["--mixer", "shc"])
    assert isinstance(args, argparse.Namespace)
    report = measure(args)
    atoms = report.spectra[0].atoms
    measured = sorted(report.eigenvalues[0])
    for atom in atoms:  # each atom carries C = 8 eigenvalues
        assert sum(abs(v - atom) <= 1e-8 * max(measured) + 1e-8 * atom for v in measured) >= 8


def _fails_with_one_line(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    for word in words:
        assert word in err
    return err


def test_bad_arguments_exit_2_with_one_line_before_any_work(capsys, monkeypatch, tmp_path):
    def never(*args, **kwargs):
        raise AssertionError("computed before checking the arguments")

    monkeypatch.setattr(spectrum, "measure", never)
    out = ["--out", str(tmp_path / "x.png")]
    _fails_with_one_line(capsys, SMALL + ["--depth", "0"] + out, "--depth must be >= 1")
    _fails_with_one_line(capsys, SMALL + ["--streams", "1"] + out, "--streams 1", "n_streams")
    _fails_with_one_line(capsys, SMALL + ["--mixer", "nope"] + out, "--mixer nope")
    _fails_with_one_line(capsys, SMALL + ["--epsilon", "nan"] + out, "--epsilon")
    missing = str(tmp_path / "missing" / "dir" / "x.png")
    _fails_with_one_line(capsys, SMALL + ["--out", missing], "--out", "does not exist")


def test_m2_and_the_bulk_are_labelled_with_their_model(tmp_path, capsys):
    assert main(SMALL + ["--out", str(tmp_path / "s.png")]) == 0
    assert "free-D model" in capsys.readouterr().out
    args = build_parser().parse_args(SMALL + ["--mixer", "jpmhc", "--init", "mean-preserving"])
    fig = spectrum.figure(measure(args), [], args)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("depth → ∞ limit" in label and "free-D model" in label for label in labels)


@pytest.mark.parametrize("mixer, init, depth", [("jpmhc", "mean-preserving", 12),
                                               ("mhc", "random", 32)])
def test_atom_markers_are_not_under_the_legend(mixer, init, depth):
    """The atom at 1 (orthogonal mixers fixing 1) and atoms clipped at the float64 floor
    (doubly stochastic collapse) are drawn where the legend is not."""
    args = build_parser().parse_args(["spectrum", "--depth", str(depth), "--width", "8",
                                      "--samples", "1", "--mixer", mixer, "--init", init])
    fig = spectrum.figure(measure(args), [], args)
    fig.canvas.draw()
    left = fig.axes[0]
    box = left.get_legend().get_window_extent()
    (markers,) = [line for line in left.get_lines() if line.get_marker() == "v"]
    points = left.transData.transform(markers.get_xydata())
    assert len(points) > 0
    if mixer == "mhc":  # collapsed below the float64 floor: clipped to the left edge
        floor = [line for line in left.get_lines() if line.get_linestyle() == ":"]
        assert floor and markers.get_xdata().min() <= floor[0].get_xdata()[0] + 0.5
    assert not any(box.contains(x, y) for x, y in points)
    inside = left.get_window_extent()
    assert all(inside.contains(x, y) for x, y in points)
