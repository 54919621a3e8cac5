"""Free-probability predictions for Jacobian spectra, checked by Monte Carlo.

Which mixer keeps a deep hyper-connected network's Jacobian well conditioned (JPmHC,
arXiv 2602.18308)? Modules, one concept each:

* :mod:`~mhckit.theory.transforms` -- S-transform series ↔ moments, free products, mean-log;
* :mod:`~mhckit.theory.symbolic` -- the same exactly, with sympy (small rational cases);
* :mod:`~mhckit.theory.laws` -- Marchenko–Pastur, Fuss–Catalan, free multiplicative BM,
  discrete laws, free products;
* :mod:`~mhckit.theory.density` -- spectral density from ``S`` (Newton + η-continuation);
* :mod:`~mhckit.theory.quadrature` -- Gaussian expectations to a stated accuracy;
* :mod:`~mhckit.theory.activations` -- mean-field ``q*``, ``χ`` and the law of ``D²``;
* :mod:`~mhckit.theory.branch` -- one residual branch ``B = εWD`` through ``β_1, β_2``;
* :mod:`~mhckit.theory.networks` -- plain deep networks and ResNets;
* :mod:`~mhckit.theory.operator_moments` -- ``n × n``-amalgamated ``m_1, m_2`` recursions;
* :mod:`~mhckit.theory.mixers` -- orthogonal, unit-marginal, Kronecker mixers;
* :mod:`~mhckit.theory.monte_carlo` -- torch Monte Carlo and Benettin QR;
* :mod:`~mhckit.theory.prediction` -- :class:`Prediction` (value + exact/expectation/limit);
* :mod:`~mhckit.theory.arrays` -- argument conversion (numpy or torch in, float64 out).

``theory`` may use :mod:`mhckit.manifolds` (to sample) and never imports ``nn``/``models``;
measuring a real model's Jacobian lives in :mod:`mhckit.nn.jacobian`.
"""

from mhckit.theory.activations import (
    ACTIVATIONS,
    Activation,
    chi,
    derivative_law,
    derivative_moment,
    fixed_point_q,
    variance_map,
)
from mhckit.theory.branch import Branch, weight_law
from mhckit.theory.density import SpectralDensity, spectral_density
from mhckit.theory.laws import (
    ClosedFormLaw,
    DiscreteLaw,
    FreeMultiplicativeBM,
    FreeProduct,
    FussCatalan,
    MarchenkoPastur,
    PointMass,
    SpectralLaw,
    free_product,
)
from mhckit.theory.mixers import (
    LyapunovBounds,
    SpectrumPrediction,
    collapse_bound,
    has_unit_marginals,
    hyperconnection_spectrum,
    is_orthogonal,
    kronecker_singular_values,
    mean_projector,
    orthogonal_reduction,
    second_singular_value,
    transverse_lyapunov_bounds,
    transverse_product,
)
from mhckit.theory.networks import (
    deep_network_law,
    deep_network_moments,
    resnet_limit_law,
    resnet_moments,
)
from mhckit.theory.operator_moments import OperatorMoments, hyperconnection_moments
from mhckit.theory.prediction import Prediction
from mhckit.theory.quadrature import AccuracyError, gaussian_expectation
from mhckit.theory.transforms import (
    free_product_moments,
    lyapunov_quantile,
    mean_log,
    moments_from_s,
    multiply_series,
    s_from_moments,
)

__all__ = [
    "Prediction",
    # transforms
    "s_from_moments", "moments_from_s", "multiply_series", "free_product_moments",
    "mean_log", "lyapunov_quantile",
    # laws and densities
    "SpectralLaw", "ClosedFormLaw", "PointMass", "MarchenkoPastur", "FussCatalan",
    "FreeMultiplicativeBM", "DiscreteLaw", "FreeProduct", "free_product",
    "SpectralDensity", "spectral_density",
    # activations, branches, networks
    "Activation", "ACTIVATIONS", "gaussian_expectation", "variance_map", "fixed_point_q",
    "chi", "derivative_moment", "derivative_law", "AccuracyError", "Branch", "weight_law",
    "deep_network_law", "deep_network_moments", "resnet_moments", "resnet_limit_law",
    # hyper-connections
    "OperatorMoments", "hyperconnection_moments",
    "mean_projector", "has_unit_marginals", "is_orthogonal", "orthogonal_reduction",
    "transverse_product", "second_singular_value", "collapse_bound", "LyapunovBounds",
    "transverse_lyapunov_bounds", "kronecker_singular_values", "SpectrumPrediction",
    "hyperconnection_spectrum",
]
