"""``mhckit spectrum``: predicted vs measured Jacobian spectrum of a hyper-connected stack."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from mhckit import theory
from mhckit.cli.errors import UsageError
from mhckit.nn import HyperConnection, get_preset
from mhckit.nn.jacobian import (
    INITS,
    hyperconnection_stack,
    input_output_jacobian,
    random_branch,
    stack_coefficients,
)
from mhckit.theory import monte_carlo

EPILOG = """\
examples:
  mhckit spectrum --mixer mhc --depth 32 --streams 4             # doubly stochastic: collapse
  mhckit spectrum --mixer jpmhc --init mean-preserving           # orthogonal fixing 1: ResNet
  mhckit spectrum --mixer shc --out shc.png --seed 1

The stack is DEPTH HyperConnection blocks with branches F(u) = eps·W·relu(u) (W Gaussian,
variance 1/C), evaluated at initialisation on SAMPLES independent networks. The left panel
is the histogram of the eigenvalues of JJᵀ (log scale) against the prediction of
mhckit.theory: for unit-marginal mixers with uniform read/write, J ≅ R ⊕ (T ⊗ I_C) exactly,
R a ResNet (free multiplicative Brownian motion law, the depth → ∞ limit) and
T = Π(M_l − 11ᵀ/n); otherwise only the operator-valued moments m1, m2 are predicted. The
right panel gives, per mixer family, bounds on the transverse Lyapunov exponent λ⊥ and its
Benettin estimate.

Validity: m1, m2 and the bulk are those of the free-D model, which draws each layer's
derivative D_l independently of the product below it. A real residual stack carries its
coordinates from layer to layer, so D_l is correlated with that product: m2 is measured
about 22% above the prediction at the defaults (L = 32, eps = 0.25), not shrinking with
width C and growing with depth at fixed t (docs/theory.md, "Validity of the free-D model").
m1 (an expectation) and the atoms and collapse bound (exact) are not affected.
"""

#: The model behind m1, m2 and the bulk: printed and drawn next to them.
FREE_D = "free-D model (D_l independent of the layers below)"
#: Measured relative excess of a real residual stack's m2 over the free-D prediction at the
#: defaults (relu, L = 32, eps = 0.25), widths 32 to 256 (tests/test_theory_networks.py).
DEFAULT_M2_BIAS = 0.22

#: Mixer families of the Lyapunov panel: preset name and H_res initialisation.
FAMILIES = (("mhc", "random"), ("mhc-lite", "random"), ("kromhc", "random"),
            ("go-mhc", "random"), ("shc", "random"), ("jpmhc", "mean-preserving"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "spectrum", help=__doc__.split(": ", 1)[1], description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixer", default="mhc", help="preset name (default: mhc)")
    parser.add_argument("--depth", type=int, default=32, help="number of blocks L (default 32)")
    parser.add_argument("--streams", type=int, default=4, help="streams n (default 4)")
    parser.add_argument("--width", type=int, default=64, help="stream width C (default 64)")
    parser.add_argument("--epsilon", type=float, default=0.25,
                        help="branch scale eps (default 0.25: t = L·eps²/2 = 1 at L = 32)")
    parser.add_argument("--activation", default="relu", choices=("relu", "linear"),
                        help="branch activation (default relu)")
    parser.add_argument("--init", default="random", choices=INITS,
                        help="H_res initialisation (default random: a point of the manifold)")
    parser.add_argument("--read", default="uniform", choices=("uniform", "one-hot"),
                        help="H_pre: uniform 1/n or the papers' one-hot (default uniform)")
    parser.add_argument("--samples", type=int, default=4,
                        help="independent networks measured (default 4)")
    parser.add_argument("--lyapunov-samples", type=int, default=2000,
                        help="mixer draws per family for the λ⊥ bounds (default 2000)")
    parser.add_argument("--lyapunov-steps", type=int, default=200,
                        help="Benettin steps per chain, 8 chains (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default="spectrum.png", help="PNG path (default spectrum.png)")
    parser.set_defaults(func=run)


@dataclass
class SpectrumReport:
    """Numbers of one ``mhckit spectrum`` run (predictions and measurements)."""

    eigenvalues: np.ndarray  # (samples, nC) measured eigenvalues of JJᵀ
    m1_predicted: float
    m2_predicted: float
    spectra: list = field(default_factory=list)  # SpectrumPrediction per network, if any
    collapse_bounds: list = field(default_factory=list)  # (bound, measured σ_{C+1}) pairs
    note: str = ""
    marginal_error: float = 0.0  # max |M1 - 1|, |Mᵀ1 - 1| over the measured mixers

    @property
    def m1_measured(self) -> float:
        return float(self.eigenvalues.mean())

    @property
    def m2_measured(self) -> float:
        return float((self.eigenvalues ** 2).mean())


def measure(args: argparse.Namespace) -> SpectrumReport:
    """Build ``args.samples`` stacks, measure their Jacobians and predict their spectra."""
    generator = torch.Generator().manual_seed(args.seed)
    n, width = args.streams, args.width
    derivative = theory.derivative_law(args.activation, 1.0)
    branch_law = theory.Branch(args.epsilon, derivative=derivative)
    eigenvalues, m1, m2, spectra, bounds, notes, errors = [], [], [], [], [], set(), []
    for _ in range(args.samples):
        stack = hyperconnection_stack(
            args.depth, n, width, args.mixer, init=args.init,
            uniform_read=args.read == "uniform", generator=generator,
            branch=lambda _layer: random_branch(width, epsilon=args.epsilon,
                                                activation=args.activation,
                                                generator=generator))
        x = torch.randn(1, n, width, generator=generator, dtype=torch.float64)
        jac = input_output_jacobian(stack, x)[0].detach()
        lam = monte_carlo.squared_singular_values(jac).numpy()
        eigenvalues.append(lam)
        mixers, pre, post = stack_coefficients(list(stack))
        # Sinkhorn presets stop early (mHC: 20 iterations), so marginals hold to ~1e-4 only
        ones = torch.ones(n, dtype=mixers.dtype)
        error = float(torch.maximum((mixers @ ones - 1).abs().max(),
                                    (mixers.mT @ ones - 1).abs().max()))
        errors.append(error)
        atol = min(max(1e-6, 2 * error), 1e-3)  # beyond 1e-3 the mixer is not unit-marginal
        moments = theory.hyperconnection_moments(mixers, pre, post, branch_law)
        m1.append(moments.m1.value)
        m2.append(moments.m2.value)
        try:
            spectra.append(theory.hyperconnection_spectrum(mixers, pre, post, branch_law,
                                                          atol=atol))
        except ValueError as err:
            notes.add(f"no density prediction: {err}")
        try:
            bound = theory.collapse_bound(mixers, post, atol=atol)
            bounds.append((float(bound), float(np.sqrt(lam[width])) if n > 1 else 0.0))
        except ValueError:
            pass
    return SpectrumReport(eigenvalues=np.stack(eigenvalues), m1_predicted=float(np.mean(m1)),
                          m2_predicted=float(np.mean(m2)), spectra=spectra,
                          collapse_bounds=bounds, note="; ".join(sorted(notes)),
                          marginal_error=max(errors))


@dataclass
class FamilyExponent:
    """Transverse Lyapunov exponent of one mixer family: bounds and Benettin estimate."""

    name: str
    lower: float
    upper: float
    benettin: float


def family_exponents(n: int, generator: torch.Generator, *, samples: int = 2000,
                     chains: int = 8, steps: int = 200) -> list[FamilyExponent]:
    """``λ⊥`` bounds (:func:`mhckit.theory.transverse_lyapunov_bounds`) and Benettin QR for
    i.i.d. random mixers of each family in :data:`FAMILIES` that exists for ``n``."""
    rows = []
    for name, init in FAMILIES:
        preset = get_preset(name)
        # sample points that meet the constraint: Sinkhorn run to its tolerance
        options = {"max_iter": 1000} if "max_iter" in dict(preset.options) else {}
        try:
            manifold = preset.build(n, **options)
        except ValueError:
            continue
        if init == "mean-preserving":  # orthogonal fixing 1: λ⊥ = 0 exactly
            rows.append(FamilyExponent(f"{name} (orthogonal, 1 fixed)", 0.0, 0.0, 0.0))
            continue
        draws = monte_carlo.sample_points(manifold, samples + chains * steps, *manifold.shape,
                                          generator=generator)
        matrices = manifold.as_matrix(draws).double()
        bounds = theory.transverse_lyapunov_bounds(matrices[:samples])
        path = matrices[samples:].reshape(chains, steps, n, n)
        estimate = float(monte_carlo.transverse_lyapunov_exponent(path).mean())
        rows.append(FamilyExponent(name, float(bounds.lower), bounds.upper, estimate))
    return rows


def figure(report: SpectrumReport, exponents: list[FamilyExponent], args: argparse.Namespace):
    """Left: eigenvalue histogram vs prediction (log10 scale). Right: λ⊥ per family.

    The legends sit below the panels, so that no marker (an atom at 1, atoms clipped at the
    float64 floor at the left edge) is hidden under them. Returns the matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lam = report.eigenvalues.ravel()
    floor = lam.max() * 1e-28  # float64 SVD resolves eigenvalues of JJᵀ down to about here
    logs = np.log10(np.clip(lam, floor, None))
    atoms = np.concatenate([s.atoms for s in report.spectra]) if report.spectra else np.ones(0)
    atom_logs = np.log10(np.clip(atoms, floor, None))
    every = np.concatenate([logs, atom_logs])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 6.0),
                                      gridspec_kw={"width_ratios": [3, 2]})
    bins = np.linspace(every.min() - 0.5, every.max() + 0.5, 80)
    left.hist(logs, bins=bins, density=True, color="tab:blue", alpha=0.5,
              label=f"measured ({args.samples} networks, nC = {lam.size // args.samples})")
    if report.spectra:
        first = report.spectra[0]
        if first.bulk is not None:
            grid = np.logspace(bins[0], bins[-1], 800)
            dens = theory.spectral_density(first.bulk, grid)
            left.plot(np.log10(grid), first.bulk_weight * dens.density * grid * math.log(10),
                      color="tab:red", lw=2,
                      label=f"predicted bulk: ResNet, depth → ∞ limit (free BM, "
                            f"t = {first.bulk.t:.2f}) of the {FREE_D}")
        weights = np.full(atoms.size, first.atom_weight / len(report.spectra))
        heights, _ = np.histogram(atom_logs, bins=bins, weights=weights)
        heights = heights / np.diff(bins)
        hit = heights > 0
        left.plot((bins[:-1] + bins[1:])[hit] / 2, heights[hit], "v", color="black", ms=7,
                  label="predicted atoms σ²(Π(M_l − J_n)|1⊥) (top of bar)")
    if (every <= np.log10(floor)).any():
        left.axvline(np.log10(floor), color="tab:gray", ls=":", lw=1,
                     label="float64 floor (values clipped here)")
    left.set_yscale("log")
    left.set_ylim(1e-3, None)
    left.set_xlabel("log10 eigenvalue of JJᵀ")
    left.set_ylabel("density")
    left.set_title(f"{args.mixer}, L = {args.depth}, n = {args.streams}, C = {args.width}, "
                   f"init = {args.init}, read = {args.read}\n"
                   f"m1 predicted {report.m1_predicted:.4g} / measured {report.m1_measured:.4g}; "
                   f"m2 {report.m2_predicted:.4g} / {report.m2_measured:.4g} "
                   "(free-D model; real stacks: m2 higher)", fontsize=9)
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    for i, row in enumerate(exponents):
        right.plot([row.lower, row.upper], [i, i], color="tab:gray", lw=6, alpha=0.5,
                   solid_capstyle="butt", label="bounds" if i == 0 else None)
        right.plot(row.benettin, i, "o", color="tab:red",
                   label="Benettin QR" if i == 0 else None)
    right.set_yticks(range(len(exponents)), [row.name for row in exponents], fontsize=8)
    right.set_xlabel("transverse Lyapunov exponent λ⊥ (per layer)")
    right.set_title(f"collapse rate of Π(M_l − 11ᵀ/n), n = {args.streams}", fontsize=9)
    right.axvline(0, color="black", lw=0.8)
    if exponents:
        right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    return fig


def plot(report: SpectrumReport, exponents: list[FamilyExponent], args: argparse.Namespace,
         path: str) -> None:
    """:func:`figure`, written to ``path``."""
    import matplotlib.pyplot as plt

    fig = figure(report, exponents, args)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_arguments(args: argparse.Namespace) -> None:
    """Every bad argument as a :class:`~mhckit.cli.errors.UsageError`, before any work
    (a run takes minutes: an unwritable ``--out`` must not wait for it)."""
    for name in ("depth", "streams", "width", "samples", "lyapunov_samples", "lyapunov_steps"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, "
                             f"got {getattr(args, name)}")
    if not (math.isfinite(args.epsilon) and args.epsilon >= 0):
        raise UsageError(f"--epsilon must be finite and >= 0, got {args.epsilon}")
    try:
        HyperConnection(args.width, args.streams, args.mixer)
    except (ValueError, TypeError) as err:
        raise UsageError(f"--mixer {args.mixer} with --streams {args.streams}: {err}") from err
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise UsageError(f"--out {args.out}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK) or os.path.isdir(args.out):
        raise UsageError(f"--out {args.out}: cannot write a file there")


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    report = measure(args)
    exponents = family_exponents(args.streams, torch.Generator().manual_seed(args.seed + 1),
                                 samples=args.lyapunov_samples, steps=args.lyapunov_steps)
    plot(report, exponents, args, args.out)
    print(f"mixer {args.mixer}: L={args.depth} n={args.streams} C={args.width} "
          f"eps={args.epsilon} init={args.init} read={args.read}")
    print(f"  m1(JJᵀ)  predicted {report.m1_predicted:.6g}  measured {report.m1_measured:.6g}")
    print(f"  m2(JJᵀ)  predicted {report.m2_predicted:.6g}  measured {report.m2_measured:.6g}")
    print(f"  (m1, m2 and the bulk: {FREE_D}; a real residual stack's m2 is higher, "
          f"about +{DEFAULT_M2_BIAS:.0%} at L = 32, eps = 0.25: see --help)")
    if report.spectra:
        first = report.spectra[0]
        t = 0.0 if first.bulk is None else first.bulk.t
        print(f"  ResNet part: t = {t:.4g}; transverse atoms (network 1): "
              + ", ".join(f"{a:.3g}" for a in first.atoms))
    for bound, measured in report.collapse_bounds[:1]:
        print(f"  sigma_(C+1)(J) measured {measured:.3g} <= bound Π σ2(M_l) {bound:.3g}")
    if report.note:
        print(f"  {report.note}")
    if 1e-9 < report.marginal_error < 1e-3:
        print(f"  mixers' marginals hold to {report.marginal_error:.2g} (Sinkhorn tolerance)")
    for row in exponents:
        print(f"  λ⊥ {row.name:28s} bounds [{row.lower:+.4f}, {row.upper:+.4f}]  "
              f"Benettin {row.benettin:+.4f}")
    print(f"wrote {args.out}")
    return 0
