"""HyperConnection: x_next = H_res·x + H_postᵀ·F(H_pre·x), for every preset."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mhckit import manifolds as M
from mhckit.nn import PRESETS, HyperConnection, expand_streams, presets
from mhckit.nn.stream_weights import ONE_HOT_TOLERANCE

MIXERS = sorted(set(PRESETS) - {"residual"})
N, C = 4, 6


def branch(dim=C):
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))


def perturbed(block, scale=0.3):
    """Move every mixer parameter away from its initial value (gates included)."""
    with torch.no_grad():
        for name, p in block.named_parameters():
            if not name.startswith("branch") and not hasattr(p, "manifold"):
                p.add_(scale * torch.randn_like(p))
    return block


class Zero(nn.Module):
    """A branch that writes nothing: the block is the pure mixer H_res·x."""

    def forward(self, x):
        return torch.zeros_like(x)


@pytest.mark.parametrize("mixer", sorted(PRESETS))
def test_block_is_a_pre_norm_residual_at_init(mixer):
    block = HyperConnection(C, N, mixer, branch=branch(), layer_index=5)
    h = torch.randn(2, 3, C)
    expected = expand_streams(h + block.branch(h), N)
    torch.testing.assert_close(block(expand_streams(h, N)), expected, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("layer_index", [0, 5])
def test_h_pre_is_one_hot_on_layer_index_mod_n_and_h_post_is_one(mixer, layer_index):
    block = HyperConnection(C, N, mixer, layer_index=layer_index)
    h_pre, h_post, point = block.coefficients(torch.randn(7, N, C))
    k = layer_index % N
    others = torch.cat([h_pre[:, :k], h_pre[:, k + 1:]], dim=-1)
    assert bool((others <= ONE_HOT_TOLERANCE + 1e-6).all())
    torch.testing.assert_close(h_pre.sum(-1), torch.ones(7))
    torch.testing.assert_close(h_post, torch.ones(7, N))
    manifold = block.manifold
    start = manifold.parametrize(block.preset.res_start(manifold))
    torch.testing.assert_close(point, start.expand_as(point))
    if mixer != "jpmhc-grassmann":
        torch.testing.assert_close(start, manifold.parametrize(manifold.identity_param()))


def test_grassmann_preset_starts_on_a_subspace_through_the_ones_vector():
    for p in (1, 2, 3):
        matrix = HyperConnection(C, N, "jpmhc-grassmann", p=p).mixing_matrix()
        torch.testing.assert_close(matrix @ torch.ones(N), torch.ones(N))
        assert int(torch.linalg.matrix_rank(matrix)) == p


@pytest.mark.parametrize("mixer", MIXERS)
def test_mixer_parameters_get_a_nonzero_gradient_at_init(mixer):
    block = HyperConnection(C, N, mixer, branch=branch())
    x = torch.randn(5, N, C)
    block(x).square().sum().backward()
    assert block.res_bias.grad.abs().sum() > 0
    res_rows = block.projection.weight.grad[2 if block.per_stream else 2 * N:]
    assert res_rows.abs().sum() > 0


def test_one_stream_residual_is_x_plus_branch():
    f = branch()
    block = HyperConnection(C, 1, "residual", branch=f)
    x = torch.randn(2, 3, C)
    torch.testing.assert_close(block(x.unsqueeze(-2)).squeeze(-2), x + f(x))
    assert list(block.parameters()) == list(f.parameters())


@pytest.mark.parametrize("mixer", ["hc", "mhc", "kromhc"])
def test_forward_equals_the_hyper_connection_formula(mixer):
    block = perturbed(HyperConnection(C, N, mixer, branch=branch()))
    x = torch.randn(3, N, C)
    h_pre, h_post, point = block.coefficients(x)
    matrix = block.manifold.as_matrix(point)
    read = torch.einsum("bn,bnc->bc", h_pre, x)
    expected = matrix @ x + h_post[..., None] * block.branch(read)[:, None, :]
    torch.testing.assert_close(block(x), expected)


def test_dynamic_coefficients_differ_per_token_and_static_ones_do_not():
    dynamic = perturbed(HyperConnection(C, N, "hc"))
    static = HyperConnection(C, N, "hc", dynamic=False)
    x = torch.randn(2, N, C)
    pre, _, res = dynamic.coefficients(x)
    assert not torch.allclose(pre[0], pre[1]) and not torch.allclose(res[0], res[1])
    pre, _, res = static.coefficients(x)
    assert pre.shape == (N,) and res.shape == (N, N)
    assert not hasattr(static, "projection")


def test_kronecker_of_user_factors_plugs_in_without_new_code():
    manifold = M.Kronecker(M.Orthostochastic(2, s=2), M.Birkhoff(3))
    block = perturbed(HyperConnection(C, 6, manifold, branch=branch()))
    x = torch.randn(4, 6, C, requires_grad=True)
    block(x).sum().backward()
    point = block.mixer_point(x)
    assert float(manifold.constraint_error(point).max()) < 1e-5
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_riemannian_mode_keeps_h_res_on_the_manifold_after_an_optimizer_step():
    import geoopt

    block = HyperConnection(C, N, "jpmhc", riemannian=True, branch=branch())
    assert isinstance(block.res, geoopt.ManifoldParameter)
    assert block.projection.weight.shape[0] == 2 * N
    opt = geoopt.optim.RiemannianAdam(block.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        block(torch.randn(8, N, C)).square().sum().backward()
        opt.step()
    assert not torch.allclose(block.res, torch.eye(N))
    assert float(block.manifold.constraint_error(block.res)) < 1e-5


@pytest.mark.parametrize("mixer", ["hc", "mhc"])
def test_gradcheck_of_a_small_block_in_float64(mixer):
    options = {"tol": 1e-13, "max_iter": 500} if mixer == "mhc" else {}
    block = perturbed(HyperConnection(3, 2, mixer, branch=nn.Linear(3, 3), **options)).double()
    names = [n for n, _ in block.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in block.parameters()]
    x = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        return torch.func.functional_call(block, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params))


@pytest.mark.parametrize("mixer", ["hc", "mhc"])
def test_compiled_block_matches_eager(mixer):
    _compiled_matches_eager(mixer)


@pytest.mark.parametrize("mixer", ["hc", "mhc"])
def test_block_compiles_to_one_graph(mixer):
    # value checks and Sinkhorn's early stop read the host; traced, they step aside
    torch._dynamo.reset()
    block = HyperConnection(4, N, mixer, branch=nn.Linear(4, 4))
    explanation = torch._dynamo.explain(block)(torch.randn(2, 3, N, 4))
    torch._dynamo.reset()
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.slow
@pytest.mark.parametrize("mixer", sorted(set(PRESETS) - {"hc", "mhc"}))
def test_compiled_block_matches_eager_for_every_preset(mixer):
    _compiled_matches_eager(mixer)


def _compiled_matches_eager(mixer):
    torch._dynamo.reset()
    block = perturbed(HyperConnection(4, N, mixer, branch=nn.Linear(4, 4)))
    x = torch.randn(2, 3, N, 4, requires_grad=True)
    eager = block(x)
    eager.square().sum().backward()
    grads = [p.grad.clone() for p in block.parameters()] + [x.grad.clone()]
    block.zero_grad()
    x.grad = None
    compiled = torch.compile(block)(x)
    compiled.square().sum().backward()
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    for got, want in zip([p.grad for p in block.parameters()] + [x.grad], grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_presets_lists_every_paper_with_parameter_counts():
    rows = presets(n_streams=4, dim=C)
    assert set(rows) == set(PRESETS)
    for name, row in rows.items():
        block = HyperConnection(C, 4, name)
        assert row.block_parameters == sum(p.numel() for p in block.parameters())
        if name == "hc":  # HC, arXiv 2409.19606 Sec. 2.2: W_m, W_β ∈ R^C and W_r ∈ R^{C×n}
            assert block.projection.weight.numel() == C * (N + 2)
            assert row.mixer_parameters == C * N
        elif name != "residual":
            assert block.projection.weight.numel() == block.manifold.sublayer_parameters(C)
            assert row.mixer_parameters == block.manifold.num_parameters(C)
    assert rows["residual"].block_parameters == 0
    assert "kromhc" not in presets(n_streams=3, dim=C)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="valid presets: .*'mhc'"):
        HyperConnection(C, N, "mhc2")
    with pytest.raises(ValueError, match="mixer must act on n_streams=4"):
        HyperConnection(C, N, M.Unconstrained(3))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n_streams=4, dim=6\)"):
        HyperConnection(C, N, "hc")(torch.randn(2, 3, C))
    with pytest.raises(ValueError, match=r"dim=6\), got \(2, 4, 5\)"):
        HyperConnection(C, N, "hc")(torch.randn(2, N, 5))
    with pytest.raises(ValueError, match="power of two"):
        HyperConnection(C, 3, "kromhc")
    with pytest.raises(TypeError, match="valid options: \\['init_mixing', 's'\\]"):
        HyperConnection(C, N, "go-mhc", q=3)
    with pytest.raises(TypeError, match="only apply to a preset name"):
        HyperConnection(C, N, M.Unconstrained(N), s=2)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        HyperConnection(0, N, "hc")


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), mixer=st.sampled_from(["mhc-lite", "kromhc", "go-mhc"]))
def test_doubly_stochastic_mixing_preserves_the_sum_of_the_streams(seed, mixer):
    torch.manual_seed(seed)
    block = perturbed(HyperConnection(C, N, mixer, branch=Zero()), scale=2.0)
    x = torch.randn(3, N, C)
    torch.testing.assert_close(block(x).sum(-2), x.sum(-2), atol=1e-4, rtol=1e-4)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1))
def test_orthogonal_mixing_preserves_the_norm_of_each_channel(seed):
    torch.manual_seed(seed)
    block = perturbed(HyperConnection(C, N, "jpmhc", branch=Zero()), scale=2.0)
    x = torch.randn(3, N, C)
    torch.testing.assert_close(block(x).norm(dim=-2), x.norm(dim=-2), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("recompute, maps", [(False, False), (True, False), (True, True)],
                         ids=["stored", "recompute", "recompute-maps"])
def test_bf16_autocast_trains_every_preset_with_the_constraint_map_in_float32(mixer, recompute,
                                                                             maps):
    """Under a bf16 autocast (the GPU default of ``mhckit train``) forward and backward run for
    every preset, the gradients are finite and near the float32 ones, and ``H_res`` comes
    from the float32 constraint map: autocast used to run the Cayley maps' small matmuls in
    bf16, and their custom backward then met float32 cotangents (go-mhc and shc raised)."""
    torch.manual_seed(0)
    hc = HyperConnection(16, 4, mixer, branch=nn.Linear(16, 16), recompute=recompute,
                         recompute_maps=maps)
    with torch.no_grad():  # a mixer away from its start, so every map has a gradient
        hc.projection.weight.normal_(0, 0.5)
    x = torch.randn(3, 5, 4, 16)
    grads = []
    for enabled in (False, True):
        hc.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            out = hc(x)
            assert hc.coefficients(x)[2].dtype == torch.float32
        out.float().square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in hc.parameters()]))
    assert torch.isfinite(grads[1]).all()
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert cosine > 0.99, f"{mixer}: bf16 gradient direction off (cosine {cosine:.4f})"
