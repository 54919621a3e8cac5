"""Every manifold the shared harness (tests/test_manifold_harness.py) runs over.

Adding a manifold to the harness is one line here: a readable id and a factory.
"""

from mhckit import manifolds as M

CASES = {
    "birkhoff-4": lambda: M.Birkhoff(4),
    "birkhoff-7-tol1e-10": lambda: M.Birkhoff(7, tol=1e-10, max_iter=200),
    "unconstrained-4": lambda: M.Unconstrained(4),
    "stiefel-5x3": lambda: M.Stiefel(5, 3),
    "stiefel-4x4": lambda: M.Stiefel(4, 4),
    "stiefel-5x3-canonical-qr": lambda: M.Stiefel(5, 3, metric="canonical", retraction="qr"),
    "grassmann-5x2": lambda: M.Grassmann(5, 2),
    "orthostochastic-3": lambda: M.Orthostochastic(3),
    "orthostochastic-3-s2": lambda: M.Orthostochastic(3, 2),
    "spectral-sphere-4": lambda: M.SpectralSphere(4),
    "spectral-sphere-tanh-4": lambda: M.SpectralSphere(4, generators="tanh"),  # the shc preset
    "permhull-3": lambda: M.PermutationHull(3),
    "kronecker-2x3": lambda: M.Kronecker(M.PermutationHull(2), M.PermutationHull(3)),
    "kronecker-birkhoff-spectral-2x3": lambda: M.Kronecker(M.Birkhoff(2), M.SpectralSphere(3)),
    "kronecker-orthogonal-2x3": lambda: M.Kronecker(M.Stiefel(2, 2), M.Stiefel(3, 3)),
    "kronecker-spectral-orthostochastic-2x2": lambda: M.Kronecker(M.SpectralSphere(2),
                                                                  M.Orthostochastic(2)),
}
