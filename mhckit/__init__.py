"""mhckit: manifold-constrained residual-stream mixing.

Layers (arrows only point down; see docs/design.md):
``models`` → ``nn`` → ``optim`` / ``theory`` → ``manifolds`` → ``functional``;
``testing`` (the manifold contract, checks and hypothesis strategies) → ``manifolds``.
"""

__version__ = "0.1.0"
