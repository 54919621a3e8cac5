"""Drift off the manifold is measured (``constraint_error``), re-projection is on request
(``stabilize``), and a step reads nothing back from the parameters' device."""

import geoopt
import pytest
import torch

from mhckit import manifolds as M
from mhckit.optim import RiemannianAdam, RiemannianSGD


def drifted(manifold, shape, amount, count=1):
    """Points of ``manifold`` pushed off it by ``amount`` (in the sense of its own measure)."""
    torch.manual_seed(0)
    points = manifold.random(count, *shape)
    return [geoopt.ManifoldParameter(x + amount * torch.randn_like(x), manifold=manifold)
            for x in points]


def assert_tangent(x, v):
    """``XᵀV + VᵀX = 0``: ``V`` is tangent to the Stiefel manifold at ``X``."""
    torch.testing.assert_close(x.mT @ v + v.mT @ x, torch.zeros(v.shape[-1], v.shape[-1]),
                               atol=1e-5, rtol=0)


def test_constraint_error_reports_each_manifold_parameter_by_its_state_dict_index():
    stiefel, birkhoff = M.Stiefel(5, 3), M.Birkhoff(4)
    frames = drifted(stiefel, (5, 3), 1e-3, count=2)
    mixer = geoopt.ManifoldParameter(birkhoff.random(4, 4), manifold=birkhoff)
    plain = torch.nn.Parameter(torch.randn(3))
    opt = RiemannianAdam([{"params": [frames[0], plain]}, {"params": [mixer, frames[1]]}])
    errors = opt.constraint_error(per_parameter=True)
    assert list(errors) == [0, 2, 3]
    torch.testing.assert_close(errors[0], stiefel.constraint_error(frames[0].detach()))
    torch.testing.assert_close(errors[2], birkhoff.constraint_error(mixer.detach()))
    torch.testing.assert_close(errors[3], stiefel.constraint_error(frames[1].detach()))
    assert float(errors[0]) > 1e-4
    torch.testing.assert_close(opt.constraint_error(), torch.stack(list(errors.values())).amax())


def test_constraint_error_of_a_geoopt_manifold_is_the_distance_to_its_projection():
    sphere = geoopt.Sphere()
    x = torch.tensor([[3.0, 4.0], [0.6, 0.8]])
    p = geoopt.ManifoldParameter(x.clone(), manifold=sphere)
    error = RiemannianSGD([p], lr=0.1).constraint_error(per_parameter=True)[0]
    torch.testing.assert_close(error, (x - sphere.projx(x)).abs().max())


def test_constraint_error_without_manifold_parameters_is_zero():
    opt = RiemannianAdam([torch.nn.Parameter(torch.randn(3))])
    assert float(opt.constraint_error()) == 0.0
    assert opt.constraint_error(per_parameter=True) == {}


def test_drift_is_kept_not_hidden_until_stabilize_is_due():
    # geoopt's canonical Stiefel retraction rotates X by a Cayley transform, which keeps
    # XᵀX -- and so any drift -- as it is: only the periodic projection removes it.
    manifold = geoopt.Stiefel()
    (p,) = drifted(manifold, (6, 3), 1e-3)
    opt = RiemannianSGD([p], lr=0.01, momentum=0.9, stabilize=3)
    errors = []
    for _ in range(6):
        p.grad = torch.randn(6, 3)
        opt.step()
        errors.append(float(opt.constraint_error()))
    assert errors[0] > 1e-4 and errors[1] > 1e-4
    assert errors[2] < 1e-5  # step 3: projected
    assert errors[5] < 1e-5
    assert_tangent(p.detach(), opt.state[p]["momentum_buffer"])


def test_stabilize_projects_points_and_their_first_moments_now():
    manifold = geoopt.Stiefel()
    params = drifted(manifold, (6, 3), 1e-3, count=2)
    opt = RiemannianAdam(params, lr=0.01)
    for p in params:
        p.grad = torch.randn(6, 3)
    opt.step()
    assert float(opt.constraint_error()) > 1e-4
    opt.stabilize()
    assert float(opt.constraint_error()) < 1e-5
    for p in params:
        assert_tangent(p.detach(), opt.state[p]["exp_avg"])


@pytest.mark.parametrize("manifold, shape", [
    (M.Stiefel(5, 3), (5, 3)), (M.Grassmann(5, 2), (5, 2)), (geoopt.Sphere(), (5,)),
    (geoopt.Stiefel(canonical=False), (5, 3)),
    (M.Birkhoff(4, tol=0, max_iter=5), (4, 4)),  # a fixed-count Sinkhorn checks nothing
], ids=["mhckit-stiefel", "mhckit-grassmann", "geoopt-sphere", "geoopt-stiefel",
        "mhckit-birkhoff-fixed-count"])
@pytest.mark.parametrize("optimizer", [
    lambda p: RiemannianAdam(p, lr=0.1, weight_decay=0.1, amsgrad=True),
    lambda p: RiemannianSGD(p, lr=0.1, momentum=0.9, nesterov=True),
], ids=["adam", "sgd"])
def test_a_step_reads_no_value_back_from_the_parameters_device(manifold, shape, optimizer):
    # Tensors on the meta device have shapes but no values: any .item(), bool() or Python
    # branch on a parameter-derived value raises, as it would wait on a GPU.
    params = [geoopt.ManifoldParameter(torch.empty(shape, device="meta"), manifold=manifold)
              for _ in range(3)] + [torch.nn.Parameter(torch.empty(4, device="meta"))]
    opt = optimizer(params)
    for _ in range(2):
        for p in params:
            p.grad = torch.empty_like(p)
        opt.step()
    assert opt.constraint_error().device.type == "meta"
