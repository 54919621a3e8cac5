"""Riemannian updates of mhckit's optimizers: fits on every set, agreement with geoopt where
geoopt is right, batching, weight decay in the tangent space, momentum start and safeguard."""

import geoopt
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from manifold_cases import CASES

from mhckit import manifolds as M
from mhckit.functional import multiplicative_max_step
from mhckit.optim import RiemannianAdam, RiemannianSGD


def as_matrix(manifold, x):
    return manifold.as_matrix(x) if isinstance(manifold, M.Manifold) else x


def start_point(manifold, shape, generator=None):
    """A point reached from the set's own chart (same connected component for every draw)."""
    if isinstance(manifold, M.Manifold):
        return manifold.parametrize(torch.randn(*manifold.param_shape, generator=generator))
    return manifold.random(*shape)


def constraint_atol(manifold):
    return manifold.constraint_atol(torch.float32) if isinstance(manifold, M.Manifold) else 1e-5


# id: (manifold factory, number of parameters, point shape, Adam options, SGD options, steps)
FITS = {
    "birkhoff-24x(4x4)": (lambda: M.Birkhoff(4), 24, (4, 4), dict(lr=0.05), dict(lr=1.0), 100),
    "kronecker-birkhoff2-spectral2": (
        lambda: M.Kronecker(M.Birkhoff(2), M.SpectralSphere(2)), 2, (4, 4), dict(lr=0.1),
        dict(lr=0.3, momentum=0.9), 60),
    "orthostochastic-3": (lambda: M.Orthostochastic(3), 2, (3, 3), dict(lr=0.05),
                          dict(lr=0.3, momentum=0.9), 100),
    "stiefel-20x10": (lambda: M.Stiefel(20, 10), 1, (20, 10), dict(lr=0.05),
                      dict(lr=0.3, momentum=0.9), 100),
    "grassmann-6x3": (lambda: M.Grassmann(6, 3), 2, (6, 3), dict(lr=0.1),
                      dict(lr=0.3, momentum=0.9), 60),
    "spectral-sphere-4": (lambda: M.SpectralSphere(4), 2, (4, 4), dict(lr=0.1),
                          dict(lr=0.3, momentum=0.9), 60),
    "geoopt-stiefel-8x3": (lambda: geoopt.Stiefel(canonical=False), 2, (8, 3), dict(lr=0.05),
                           dict(lr=0.3, momentum=0.9), 100),
    "geoopt-sphere-8": (lambda: geoopt.Sphere(), 2, (8,), dict(lr=0.1),
                        dict(lr=0.3, momentum=0.9), 60),
    "geoopt-birkhoff-4": (lambda: geoopt.BirkhoffPolytope(), 4, (4, 4), dict(lr=0.1),
                          dict(lr=1.0, momentum=0.9), 150),
}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("case", list(FITS))
def test_optimizer_fits_a_target_and_stays_on_the_set_throughout(case, optimizer):
    make, count, shape, adam, sgd, steps = FITS[case]
    torch.manual_seed(0)
    manifold = make()
    params = [geoopt.ManifoldParameter(start_point(manifold, shape), manifold=manifold)
              for _ in range(count)]
    targets = [as_matrix(manifold, start_point(manifold, shape)).detach() for _ in range(count)]
    opt = RiemannianAdam(params, **adam) if optimizer == "adam" else RiemannianSGD(params, **sgd)

    def loss():
        return sum(0.5 * (as_matrix(manifold, p) - t).pow(2).sum()
                   for p, t in zip(params, targets, strict=True))

    first = float(loss().detach())
    drift = torch.zeros(())
    for _ in range(steps):
        opt.zero_grad()
        loss().backward()
        opt.step()
        drift = torch.maximum(drift, opt.constraint_error())
    assert float(drift) <= constraint_atol(manifold)
    assert float(loss().detach()) <= 1e-2 * first


@pytest.mark.parametrize("optimizer", [RiemannianAdam, RiemannianSGD])
@pytest.mark.parametrize("case", list(CASES))
def test_every_harness_manifold_stays_on_its_set_while_the_loss_falls(case, optimizer):
    torch.manual_seed(1)
    manifold = CASES[case]()
    point = geoopt.ManifoldParameter(manifold.random(*manifold.shape), manifold=manifold)
    target = torch.randn(manifold.n, manifold.n)
    opt = optimizer([point], lr=0.05) if optimizer is RiemannianAdam else optimizer(
        [point], lr=0.05, momentum=0.5)

    def loss():
        return ((manifold.as_matrix(point) - target) ** 2).sum()

    first = float(loss().detach())
    for _ in range(10):
        opt.zero_grad()
        loss().backward()
        opt.step()
        assert float(opt.constraint_error()) <= manifold.constraint_atol(torch.float32)
    assert float(loss().detach()) < first


@pytest.mark.parametrize("manifold, shape", [
    (M.Stiefel(6, 3), (6, 3)), (M.Birkhoff(4), (4, 4)), (geoopt.Sphere(), (6,)),
], ids=["mhckit-stiefel", "mhckit-birkhoff", "geoopt-sphere"])
def test_adam_agrees_with_geoopt_adam_where_geoopt_is_right(manifold, shape):
    # One number of second moment per point and transport by projection: geoopt's update
    # and ours are the same map, so both directions of interop are checked at once.
    torch.manual_seed(2)
    start = [start_point(manifold, shape) for _ in range(3)]
    ours = [geoopt.ManifoldParameter(x.clone(), manifold=manifold) for x in start]
    theirs = [geoopt.ManifoldParameter(x.clone(), manifold=manifold) for x in start]
    ours_opt = RiemannianAdam(ours, lr=0.02)
    theirs_opt = geoopt.optim.RiemannianAdam(theirs, lr=0.02)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        for p, q in zip(ours, theirs, strict=True):
            p.grad = 0.1 * torch.randn(p.shape, generator=generator)
            q.grad = p.grad.clone()
        ours_opt.step()
        theirs_opt.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), atol=2e-5, rtol=0)


def test_sgd_momentum_starts_at_the_riemannian_gradient():
    manifold = M.Stiefel(5, 2)
    x0 = manifold.random(5, 2)
    p = geoopt.ManifoldParameter(x0.clone(), manifold=manifold)
    p.grad = torch.randn(5, 2)
    opt = RiemannianSGD([p], lr=0.1, momentum=0.9, dampening=0.5)
    opt.step()
    r = manifold.egrad2rgrad(x0, p.grad)
    torch.testing.assert_close(p.detach(), manifold.retr(x0, -0.1 * r))
    torch.testing.assert_close(opt.state[p]["momentum_buffer"],
                               manifold.transp(x0, p.detach(), r))


def test_momentum_is_a_tangent_vector_transported_to_each_new_point():
    manifold = M.Stiefel(6, 3)
    p = geoopt.ManifoldParameter(manifold.random(6, 3), manifold=manifold)
    opt = RiemannianSGD([p], lr=0.05, momentum=0.9, nesterov=True)
    for _ in range(5):
        p.grad = torch.randn(6, 3)
        opt.step()
        b = opt.state[p]["momentum_buffer"]
        torch.testing.assert_close(manifold.proju(p.detach(), b), b, atol=1e-6, rtol=0)


def test_sgd_without_momentum_is_the_plain_riemannian_step():
    manifold = M.Grassmann(6, 2)
    x0 = manifold.random(6, 2)
    g = torch.randn(6, 2)
    p = geoopt.ManifoldParameter(x0.clone(), manifold=manifold)
    p.grad = g.clone()
    RiemannianSGD([p], lr=0.2, weight_decay=0.1).step()
    expected = manifold.retr(x0, -0.2 * manifold.egrad2rgrad(x0, g + 0.1 * x0))
    torch.testing.assert_close(p.detach(), expected)


@pytest.mark.parametrize("manifold", [M.SpectralSphere(4), M.Stiefel(4, 4)],
                         ids=["spectral-sphere", "stiefel"])
def test_decoupled_weight_decay_is_the_riemannian_gradient_of_half_the_squared_norm(manifold):
    x0 = manifold.random(*manifold.shape)
    p = geoopt.ManifoldParameter(x0.clone(), manifold=manifold)
    p.grad = torch.zeros_like(p)
    RiemannianAdam([p], lr=0.1, weight_decay=0.5).step()
    expected = manifold.retr(x0, -0.1 * 0.5 * manifold.egrad2rgrad(x0, x0))
    torch.testing.assert_close(p.detach(), expected, atol=1e-6, rtol=0)
    if isinstance(manifold, M.Stiefel):  # ‖X‖ is fixed on O(n): decay has nothing to do
        torch.testing.assert_close(p.detach(), x0, atol=1e-6, rtol=0)


@pytest.mark.parametrize("optimizer", [
    lambda p: RiemannianAdam(p, lr=0.05, amsgrad=True),
    lambda p: RiemannianSGD(p, lr=0.05, momentum=0.9),
], ids=["adam", "sgd"])
def test_a_batched_bucket_moves_each_point_as_if_alone(optimizer):
    manifold = M.Stiefel(5, 3)
    start = manifold.random(6, 5, 3)
    together = [geoopt.ManifoldParameter(x.clone(), manifold=manifold) for x in start]
    alone = [geoopt.ManifoldParameter(x.clone(), manifold=M.Stiefel(5, 3)) for x in start]
    together_opt = optimizer(together)
    alone_opts = [optimizer([p]) for p in alone]
    for _ in range(5):
        for p, q in zip(together, alone, strict=True):
            p.grad = torch.randn(5, 3)
            q.grad = p.grad.clone()
        together_opt.step()
        for opt in alone_opts:
            opt.step()
    for p, q in zip(together, alone, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), atol=1e-6, rtol=0)


class CountingStiefel(M.Stiefel):
    calls = 0

    def retr(self, x, u):
        CountingStiefel.calls += 1
        return super().retr(x, u)


def test_like_manifolds_share_one_retraction_call_per_step():
    square = [geoopt.ManifoldParameter(M.Stiefel(4, 4).random(4, 4), manifold=CountingStiefel(4, 4))
              for _ in range(12)]
    thin = [geoopt.ManifoldParameter(M.Stiefel(4, 2).random(4, 2), manifold=CountingStiefel(4, 2))
            for _ in range(5)]
    other_metric = geoopt.ManifoldParameter(
        M.Stiefel(4, 4).random(4, 4), manifold=CountingStiefel(4, 4, metric="canonical"))
    params = [*square, *thin, other_metric, torch.nn.Parameter(torch.randn(3))]
    opt = RiemannianAdam(params, lr=0.01)
    for p in params:
        p.grad = torch.randn_like(p)
    CountingStiefel.calls = 0
    opt.step()
    assert CountingStiefel.calls == 3  # (4x4 euclidean), (4x2), (4x4 canonical)


def test_mixed_groups_update_plain_parameters_like_adamw_and_manifold_ones_on_their_set():
    torch.manual_seed(3)
    manifold = M.Birkhoff(4)
    plain = [torch.nn.Parameter(torch.randn(4, 4)), torch.nn.Parameter(torch.randn(4))]
    mixers = [geoopt.ManifoldParameter(manifold.random(4, 4), manifold=manifold)
              for _ in range(3)]
    reference = [torch.nn.Parameter(p.detach().clone()) for p in plain]
    opt = RiemannianAdam([
        {"params": [plain[0], mixers[0]], "weight_decay": 0.1},
        {"params": [plain[1], *mixers[1:]], "lr": 0.01},
    ], lr=0.02)
    adamw = torch.optim.AdamW([{"params": [reference[0]], "weight_decay": 0.1},
                               {"params": [reference[1]], "lr": 0.01, "weight_decay": 0.0}],
                              lr=0.02)
    for _ in range(10):
        for p, q in zip(plain, reference, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        for m in mixers:
            m.grad = torch.randn_like(m)
        opt.step()
        adamw.step()
    for p, q in zip(plain, reference, strict=True):
        assert torch.equal(p.detach(), q.detach())
    assert float(opt.constraint_error()) <= manifold.constraint_atol(torch.float32)


@given(shrink=st.floats(0.1, 3.0), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_multiplicative_safeguard_bounds_the_relative_shrink_of_every_entry(shrink, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    x = M.Birkhoff(4).random(3, 4, 4, generator=generator, scale=3.0).double()
    x[0, 0, 0] = 0.0  # a boundary entry stays out of the ratio (no NaN)
    u = scale * torch.randn(3, 4, 4, generator=generator, dtype=torch.float64)
    t = multiplicative_max_step(x, u, shrink=shrink)
    assert t.shape == (3, 1, 1)
    assert bool(((t > 0) & (t <= 1)).all())
    ratio = torch.where(x > 0, u / x.clamp_min(1e-300), torch.zeros_like(u))
    assert float((t * ratio).min()) >= -shrink * (1 + 1e-12)
    safe = (ratio.amin((-2, -1)) >= -shrink) & (ratio.amax((-2, -1)) <= 20.0)
    assert bool((t.view(3)[safe] == 1).all())  # a step that is already safe is not shortened


def smallest_entry_under_momentum_sgd(manifold, lr, steps):
    """Fit 8 Birkhoff points to 8 targets by momentum SGD (μ 0.9); the smallest entry any
    point reaches on the way, and the final points."""
    torch.manual_seed(0)
    params = [geoopt.ManifoldParameter(start_point(manifold, (4, 4)), manifold=manifold)
              for _ in range(8)]
    targets = [start_point(manifold, (4, 4)) for _ in range(8)]
    opt = RiemannianSGD(params, lr=lr, momentum=0.9)
    smallest = 1.0
    for _ in range(steps):
        opt.zero_grad()
        sum(0.5 * (p - t).pow(2).sum() for p, t in zip(params, targets, strict=True)).backward()
        opt.step()
        smallest = min(smallest, min(float(p.detach().min()) for p in params))
    return smallest, params


def test_momentum_sgd_keeps_doubly_stochastic_entries_off_zero():
    # geoopt's Birkhoff retraction is X ⊙ exp(U/X) then Sinkhorn: a long momentum step
    # underflows entries to zero (geoopt clamps them at 1e-12, then the loss turns NaN).
    # The safeguard bounds every entry's shrink per step (measured: without it, this run
    # reaches the 1e-12 floor; with it, the smallest entry stays near 3e-5).
    smallest, params = smallest_entry_under_momentum_sgd(geoopt.BirkhoffPolytope(), 30.0, 60)
    assert smallest > 1e-6
    assert all(bool(torch.isfinite(p).all()) for p in params)


def test_momentum_sgd_on_mhckit_birkhoff_keeps_entries_off_zero():
    # transport in log-coordinates, proju(Y, V ⊙ Y / X): measured smallest entry 2.6e-3;
    # with a plain projection as transport, entries reach 6e-17 in this run
    smallest, _ = smallest_entry_under_momentum_sgd(M.Birkhoff(4), 0.3, 40)
    assert smallest > 1e-4


@given(lr=st.floats(1e-3, 0.3), momentum=st.floats(0.0, 0.95), nesterov=st.booleans(),
       weight_decay=st.floats(0.0, 0.5), decoupled=st.booleans(), seed=st.integers(0, 2**16))
def test_any_sgd_setting_keeps_frames_orthonormal_and_momentum_tangent(
        lr, momentum, nesterov, weight_decay, decoupled, seed):
    generator = torch.Generator().manual_seed(seed)
    manifold = M.Stiefel(5, 3)
    params = [geoopt.ManifoldParameter(manifold.random(5, 3, generator=generator),
                                       manifold=manifold) for _ in range(2)]
    opt = RiemannianSGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                        weight_decay=weight_decay, decoupled_weight_decay=decoupled)
    for _ in range(3):
        for p in params:
            p.grad = torch.randn(5, 3, generator=generator)
        opt.step()
    assert float(opt.constraint_error()) <= 1e-5
    for p in params:
        b = opt.state[p].get("momentum_buffer")
        if b is not None:
            torch.testing.assert_close(manifold.proju(p.detach(), b), b, atol=1e-5, rtol=0)
