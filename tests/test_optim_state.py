"""Checkpointing: state_dict round trips exactly; a resumed run continues bit for bit."""

import copy
import io

import geoopt
import pytest
import torch

from mhckit import manifolds as M
from mhckit.optim import RiemannianAdam, RiemannianSGD

OPTIMIZERS = {
    "adam-amsgrad": lambda params: RiemannianAdam(params, lr=0.03, weight_decay=0.1,
                                                  amsgrad=True),
    "sgd-nesterov": lambda params: RiemannianSGD(params, lr=0.1, momentum=0.9, nesterov=True,
                                                 weight_decay=0.01),
    "sgd-stabilize": lambda params: RiemannianSGD(params, lr=0.1, momentum=0.5, stabilize=2),
}


def make_params():
    torch.manual_seed(0)
    birkhoff, stiefel = M.Birkhoff(4), M.Stiefel(5, 3)
    return [torch.nn.Parameter(torch.randn(6, 4)),
            *(geoopt.ManifoldParameter(birkhoff.random(4, 4), manifold=birkhoff)
              for _ in range(3)),
            geoopt.ManifoldParameter(stiefel.random(5, 3), manifold=stiefel),
            torch.nn.Parameter(torch.randn(3))]


def train(params, opt, steps, first_step):
    for step in range(first_step, first_step + steps):
        generator = torch.Generator().manual_seed(step)
        for p in params:
            p.grad = 0.1 * torch.randn(p.shape, generator=generator)
        opt.step()


def saved(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trips_exactly_including_transported_momentum(name):
    params = make_params()
    opt = OPTIMIZERS[name](params)
    train(params, opt, 4, 0)
    state = saved(opt.state_dict())
    fresh = OPTIMIZERS[name](make_params())
    fresh.load_state_dict(state)
    again = fresh.state_dict()
    assert again["param_groups"] == state["param_groups"]
    assert again["state"].keys() == state["state"].keys()
    for index, entries in state["state"].items():
        assert again["state"][index].keys() == entries.keys()
        for key, value in entries.items():
            assert torch.equal(again["state"][index][key], value), (index, key)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_resumed_run_continues_bit_for_bit(name):
    params = make_params()
    opt = OPTIMIZERS[name](params)
    train(params, opt, 3, 0)
    checkpoint = saved({"params": [p.detach().clone() for p in params],
                        "optimizer": opt.state_dict()})
    train(params, opt, 4, 3)

    resumed = make_params()
    with torch.no_grad():
        for p, value in zip(resumed, checkpoint["params"], strict=True):
            p.copy_(value)
    resumed_opt = OPTIMIZERS[name](resumed)
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    train(resumed, resumed_opt, 4, 3)
    for p, q in zip(params, resumed, strict=True):
        assert torch.equal(p.detach(), q.detach())
    for p, q in zip(params, resumed, strict=True):
        for key, value in opt.state[p].items():
            assert torch.equal(resumed_opt.state[q][key], value), key


def adam_twin(params, opt):
    """Deep copies of ``params`` and a new ``RiemannianAdam`` over them with ``opt``'s state."""
    twin_params = copy.deepcopy(params)
    twin = RiemannianAdam(twin_params, lr=0.03)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    return twin_params, twin


def assert_both_step_alike(params, opt, twin_params, twin, steps, first_step):
    train(params, opt, steps, first_step)
    train(twin_params, twin, steps, first_step)
    for p, q in zip(params, twin_params, strict=True):
        assert torch.equal(p.detach(), q.detach())


def test_a_deep_copied_optimizer_steps_like_the_original():
    params = make_params()
    opt = RiemannianAdam(params, lr=0.03)
    train(params, opt, 2, 0)
    assert_both_step_alike(params, opt, *adam_twin(params, opt), 2, 2)


def test_a_pickled_optimizer_keeps_stepping():
    params = make_params()
    opt = RiemannianSGD(params, lr=0.1, momentum=0.9)
    train(params, opt, 2, 0)
    twin = saved(opt)
    twin_params = [p for group in twin.param_groups for p in group["params"]]
    assert_both_step_alike(params, opt, twin_params, twin, 2, 2)


# -- the split kept between steps, and the stacked state of its buckets ----------------------

def test_kept_buckets_hold_their_state_as_rows_of_one_stack():
    params = make_params()
    opt = RiemannianAdam(params, lr=0.03)
    train(params, opt, 3, 0)
    mixers = params[1:4]  # the three Birkhoff(4) points: one bucket
    for name in ("exp_avg", "exp_avg_sq", "step"):
        bases = {id(opt.state[p][name]._base) for p in mixers}
        assert len(bases) == 1 and opt.state[mixers[0]][name]._base is not None, name
    assert opt.state[params[4]]["exp_avg"]._base is None  # a bucket of one: its own tensor


def replace_a_row(opt, p):
    opt.state[p]["exp_avg"] = torch.zeros_like(opt.state[p]["exp_avg"])


def edit_a_row_in_place(opt, p):
    opt.state[p]["exp_avg"].mul_(-2.0)


def change_a_step_count(opt, p):
    opt.state[p]["step"].fill_(1.0)


def replace_a_state_dict(opt, p):
    opt.state[p] = {key: value.clone() * 0.5 for key, value in opt.state[p].items()}


EDITS = [replace_a_row, edit_a_row_in_place, change_a_step_count, replace_a_state_dict]


@pytest.mark.parametrize("edit", EDITS, ids=lambda edit: edit.__name__)
def test_edits_of_the_state_from_outside_reach_the_next_step(edit):
    """The kept split and the stacked rows notice a changed state: the optimizer steps as a
    deep copy does, whose split is formed afresh."""
    params = make_params()
    opt = RiemannianAdam(params, lr=0.03)
    train(params, opt, 3, 0)
    twin_params, twin = adam_twin(params, opt)
    edit(opt, params[2])
    edit(twin, twin_params[2])
    assert_both_step_alike(params, opt, twin_params, twin, 3, 3)


def test_a_parameter_without_gradient_skips_a_step_and_the_rest_batch_again():
    params = make_params()
    opt = RiemannianAdam(params, lr=0.03)
    train(params, opt, 2, 0)
    before = params[2].detach().clone()
    for p in params:
        p.grad = 0.1 * torch.ones_like(p)
    params[2].grad = None
    opt.step()
    assert torch.equal(params[2].detach(), before)
    assert float(opt.state[params[2]]["step"]) == 2 and float(opt.state[params[1]]["step"]) == 3
    train(params, opt, 2, 5)  # counts differ now: two buckets, each with its own count
    assert float(opt.state[params[2]]["step"]) == 4 and float(opt.state[params[1]]["step"]) == 5
