"""Test the geometry of any manifold: the contract mhckit's own sets pass, as public API.

* :func:`assert_manifold` -- the whole contract in one call (:mod:`mhckit.testing.contract`);
* :func:`check_gradient`, :func:`check_retraction`, :func:`check_tangent`,
  :func:`check_hessian`, :func:`retraction_order` -- single numerical checks returning
  their measurements (Manopt's ``checkgradient``/``checkhessian`` slope tests);
* :mod:`mhckit.testing.strategies` -- hypothesis strategies (``points``,
  ``tangent_vectors``, ``unconstrained``, ``mixer_stacks``). Hypothesis is an optional
  dependency (``pip install 'mhckit[testing]'`` or ``pip install hypothesis``); importing the
  strategies without it raises an ``ImportError`` that says so, everything else here works
  without it.
"""

from mhckit.testing.checks import (
    GradientCheck,
    RetractionCheck,
    TangentCheck,
    check_gradient,
    check_retraction,
    check_tangent,
)
from mhckit.testing.contract import PROPERTIES, Failure, assert_manifold
from mhckit.testing.hessian import HessianCheck, OrderCheck, check_hessian, retraction_order

__all__ = ["assert_manifold", "PROPERTIES", "Failure", "check_gradient", "check_retraction",
           "check_tangent", "check_hessian", "retraction_order", "GradientCheck",
           "RetractionCheck", "TangentCheck", "HessianCheck", "OrderCheck"]
