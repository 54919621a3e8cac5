"""The shared base of mhckit's Riemannian optimizers.

Parameters are ``torch.optim``-style groups holding any mix of plain ``nn.Parameter``s
(Euclidean) and ``geoopt.ManifoldParameter``s of mhckit or geoopt manifolds (Riemannian).
One step of a subclass

1. updates the Euclidean parameters with ``torch._foreach_*`` kernels in exactly the
   arithmetic of the matching ``torch.optim`` optimizer;
2. updates the Riemannian ones by :class:`~mhckit.optim.buckets.Bucket`, one batched manifold
   call per bucket of like parameters, moving each point along a tangent step ``u`` by

       x <- retr_x(t * (u - lr * wd * grad_R(1/2 ||x||^2)))        (decoupled decay only)

   where ``grad_R(1/2 ||x||^2) = egrad2rgrad(x, x)`` is the Riemannian gradient of the
   squared-norm penalty (AdamW's decay, taken in the tangent space) and ``t in (0, 1]`` the
   manifold's step-size safeguard (:func:`step_limit_of`); the optimizer's tangent state
   (momentum, first moment) follows by vector transport.

No point is re-projected unless asked (``stabilize=k``: ``projx`` every ``k``-th step of a
parameter, the transported state re-projected with it); the drift is *measured* by
:meth:`RiemannianOptimizer.constraint_error` instead. The step reads no tensor value back to
the host, so it never waits on a GPU: it runs the manifold maps inside
``value_checks(False)`` (its points are on their sets by construction), so their argument
checks read nothing either (a Sinkhorn that stops on a tolerance still must).
"""

from __future__ import annotations

import operator
from abc import abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import geoopt
import torch

from mhckit.functional.multiplicative_step import multiplicative_max_step
from mhckit.functional.validation import check_bool, check_float
from mhckit.functional.value_checks import value_checks
from mhckit.optim.buckets import Bucket, manifold_key, manifold_of

__all__ = ["RiemannianOptimizer", "point_error", "step_limit_of"]


#: Sets whose retraction is multiplicative but that define no ``max_step`` (geoopt's).
_MULTIPLICATIVE_RETRACTIONS = (geoopt.BirkhoffPolytope,)


def step_limit_of(manifold: geoopt.Manifold
                  ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The manifold's step-size safeguard ``(x, u) -> t``, ``t in (0, 1]`` the fraction of
    the tangent step ``u`` that ``manifold.retr`` takes safely from ``x`` (broadcasting
    against ``u``), or ``None`` for no limit.

    The manifold's own optional ``max_step(x, u)`` method first (mhckit's ``Birkhoff``
    defines one); for geoopt's ``BirkhoffPolytope``, whose retraction is multiplicative and
    which defines no such method, :func:`~mhckit.functional.multiplicative_max_step`.
    Resolved once per parameter by the optimizer.
    """
    limit = getattr(manifold, "max_step", None)
    if limit is not None:
        return limit
    if isinstance(manifold, _MULTIPLICATIVE_RETRACTIONS):
        return multiplicative_max_step
    return None


def point_error(manifold: geoopt.Manifold, x: torch.Tensor) -> torch.Tensor:
    """Constraint violation of each point in ``x``, shape ``x.shape[:-manifold.ndim]``.

    ``manifold.constraint_error`` for a mhckit manifold; for a geoopt manifold, which has
    none, the largest entry of ``|projx(x) - x|`` (its distance to the set as its own
    projection sees it).
    """
    measure = getattr(manifold, "constraint_error", None)
    if measure is not None:
        return measure(x)
    distance = (manifold.projx(x) - x).abs()
    return distance.amax(dim=tuple(range(-manifold.ndim, 0))) if manifold.ndim else distance


@dataclass
class _Partition:
    """A group's split into plain parameters and buckets, kept between eager steps."""

    group: dict
    params: list[torch.Tensor]
    with_grad: list[bool]
    euclidean: list[torch.Tensor]
    euclidean_states: list[dict]
    buckets: list[Bucket]

    def holds(self, group: dict, params: list[torch.Tensor], with_grad: list[bool],
              state: dict) -> bool:
        """Whether this split is still the split of ``group`` (same parameters, same ones
        with gradients, their state dicts unreplaced)."""
        return (group is self.group and with_grad == self.with_grad
                and len(params) == len(self.params)
                and all(map(operator.is_, params, self.params))
                and all(map(operator.is_, map(state.get, self.euclidean), self.euclidean_states))
                and all(b.is_current(state) for b in self.buckets))


class RiemannianOptimizer(torch.optim.Optimizer):
    """Base of :class:`~mhckit.optim.RiemannianSGD` and :class:`~mhckit.optim.RiemannianAdam`.

    Subclasses implement ``_init_state`` (state of a parameter's first step),
    ``_euclidean_update`` (plain parameters of a group, as lists) and ``_riemannian_update``
    (one :class:`~mhckit.optim.buckets.Bucket`), using ``_riemannian_grad`` and ``_move``.
    Every group has ``lr``, ``weight_decay``, ``decoupled_weight_decay`` and ``stabilize``.
    """

    #: names of the per-parameter state tensors that are tangent vectors (re-projected
    #: by :meth:`stabilize`)
    _tangent_state: tuple[str, ...] = ()

    def __init__(self, params: Iterable, defaults: dict) -> None:
        self._manifold_keys: dict = {}  # parameter -> (manifold, key, step limit)
        self._partitions: dict = {}  # id(group) -> _Partition of its last step
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:  # unpickling (and deepcopy) skips __init__
        super().__setstate__(state)
        self.__dict__.setdefault("_manifold_keys", {})
        self.__dict__["_partitions"] = {}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._partitions.clear()

    def add_param_group(self, param_group: dict) -> None:
        self.__dict__.setdefault("_partitions", {}).clear()
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        self._check_group(group)
        for p in group["params"]:
            if p.is_complex():
                raise TypeError(f"params must be real tensors, got one of dtype {p.dtype}")

    def _check_group(self, group: dict) -> None:
        """Validate a group's hyperparameters (``ValueError``/``TypeError`` naming them), as
        ``torch.optim`` does and stricter: a NaN or infinite value is a ``ValueError``."""
        check_float(group["lr"], "lr", low=0.0)
        check_float(group["weight_decay"], "weight_decay", low=0.0)
        check_bool(group["decoupled_weight_decay"], "decoupled_weight_decay")
        stabilize = group["stabilize"]
        if stabilize is not None and (isinstance(stabilize, bool)
                                      or not isinstance(stabilize, int) or stabilize < 1):
            raise ValueError(f"stabilize must be None or an int >= 1, got {stabilize!r}")

    # -- hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _init_state(self, group: dict, state: dict, param: torch.Tensor,
                    manifold: geoopt.Manifold | None) -> None:
        """Fill the empty ``state`` of ``param`` (in ``group``) before its first step."""

    @abstractmethod
    def _euclidean_update(self, group: dict, params: list[torch.Tensor]) -> None:
        """Update the plain parameters of ``group`` that have gradients."""

    @abstractmethod
    def _riemannian_update(self, group: dict, bucket: Bucket) -> None:
        """Update one bucket of manifold parameters."""

    # -- the step ------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Perform one optimization step (``closure`` re-evaluates the loss, as in torch)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if torch.compiler.is_compiling():  # value checks are off while tracing anyway
            self._update()
        else:
            with value_checks(False):  # the points are on their sets by construction
                self._update()
        return loss

    def _update(self) -> None:
        for group in self.param_groups:
            euclidean, buckets = self._partition(group)
            if euclidean:
                self._euclidean_update(group, euclidean)
            for bucket in buckets:
                self._riemannian_update(group, bucket)

    def _manifold_and_key(self, param: torch.Tensor) -> tuple:
        """``(manifold, manifold_key, step_limit_of)`` of ``param``, computed once."""
        cached = self._manifold_keys.get(param)
        if cached is None:
            manifold = manifold_of(param)
            cached = (None, None, None) if manifold is None else (
                manifold, manifold_key(manifold), step_limit_of(manifold))
            self._manifold_keys[param] = cached
        return cached

    def _partition(self, group: dict) -> tuple[list[torch.Tensor], list[Bucket]]:
        """Split the parameters with gradients into plain ones and buckets of like points.

        Eagerly, the split of the group's last step is kept while it still holds: the same
        parameters, the same ones with gradients, and the same state (see
        :meth:`Bucket.is_current`); its buckets then keep their state stacked."""
        if torch.compiler.is_compiling():
            return self._split(group)
        params = group["params"]
        grads = [p.grad for p in params]
        with_grad = [g is not None for g in grads]
        kept = self._partitions.get(id(group))
        if (kept is not None and kept.holds(group, params, with_grad, self.state)
                and not any(g.is_sparse for g in grads if g is not None)):
            return kept.euclidean, kept.buckets
        euclidean, buckets = self._split(group)
        self._partitions[id(group)] = _Partition(group, list(params), with_grad, euclidean,
                                                 [self.state[p] for p in euclidean], buckets)
        return euclidean, buckets

    def _split(self, group: dict) -> tuple[list[torch.Tensor], list[Bucket]]:
        """:meth:`_partition` from scratch: creates the state of new parameters and reads
        the step counts."""
        euclidean: list[torch.Tensor] = []
        buckets: dict = {}
        compiling = torch.compiler.is_compiling()
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            manifold, kind, limit = self._manifold_and_key(p)
            state = self.state[p]
            fresh = "step" not in state
            if fresh:
                self._init_state(group, state, p, manifold)
            if manifold is None:
                euclidean.append(p)
                continue
            count = 0.0 if compiling else state["step"].item()
            key = (kind, p.shape, p.dtype, p.device, fresh, count)
            bucket = buckets.get(key)
            if bucket is None:
                bucket = buckets[key] = Bucket(manifold, limit, [], [], count)
            bucket.params.append(p)
            bucket.states.append(state)
        return euclidean, list(buckets.values())

    def _riemannian_grad(self, group: dict, bucket: Bucket, x: torch.Tensor) -> torch.Tensor:
        """``egrad2rgrad(x, g + wd·x)`` (coupled L2 decay) or ``egrad2rgrad(x, g)``."""
        g = bucket.grad()
        weight_decay = group["weight_decay"]
        if weight_decay != 0 and not group["decoupled_weight_decay"]:
            g = g.add(x, alpha=weight_decay)
        return bucket.manifold.egrad2rgrad(x, g)

    def _move(self, group: dict, bucket: Bucket, x: torch.Tensor, u: torch.Tensor,
              vector: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Retract ``x`` along ``u`` (plus decoupled decay, times the safeguard) and
        transport the tangent ``vector`` to the new point; re-project when ``stabilize``
        is due. Returns the new points and the transported vector."""
        manifold = bucket.manifold
        weight_decay = group["weight_decay"]
        if weight_decay != 0 and group["decoupled_weight_decay"]:
            u = u.sub(manifold.egrad2rgrad(x, x), alpha=group["lr"] * weight_decay)
        if bucket.max_step is not None:  # a shortened step shortens the velocity behind it
            limit = bucket.max_step(x, u)
            u = u * limit
            vector = None if vector is None else vector * limit
        if vector is None:
            y = manifold.retr(x, u)
        else:
            y, vector = manifold.retr_transp(x, u, vector)
        every = group["stabilize"]
        if every is not None:
            y, vector = self._stabilize(manifold, bucket.count, every, y, vector)
        return y, vector

    @staticmethod
    def _stabilize(manifold: geoopt.Manifold, count: float | torch.Tensor, every: int,
                   y: torch.Tensor, vector: torch.Tensor | None):
        if isinstance(count, float):
            if count % every != 0:
                return y, vector
            y = manifold.projx(y)
            return y, None if vector is None else manifold.proju(y, vector)
        due = torch.remainder(count, every) == 0  # compiled: select instead of branching
        y = torch.where(due, manifold.projx(y), y)
        if vector is not None:
            vector = torch.where(due, manifold.proju(y, vector), vector)
        return y, vector

    # -- measurement ---------------------------------------------------------------------
    @torch.no_grad()
    def constraint_error(self, per_parameter: bool = False
                         ) -> torch.Tensor | dict[int, torch.Tensor]:
        """How far the manifold parameters have drifted off their sets.

        Returns the largest constraint violation over all manifold parameters (a 0-dim
        tensor on their device, ``0`` if there are none), or with ``per_parameter`` a dict
        from a parameter's index -- its position across ``param_groups``, as in
        ``state_dict()`` -- to its largest violation. Like points are measured in one
        batched call; nothing is read back to the host.
        """
        like: dict = {}
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                manifold, kind, _ = self._manifold_and_key(p)
                if manifold is not None:
                    key = (kind, p.shape, p.dtype, p.device)
                    like.setdefault(key, (manifold, [], []))
                    like[key][1].append(index)
                    like[key][2].append(p)
                index += 1
        errors: dict[int, torch.Tensor] = {}
        for manifold, indices, params in like.values():
            with value_checks(False):  # a report: a NaN parameter gives NaN or inf, no read
                per_point = point_error(manifold, torch.stack(params))
            worst = per_point.reshape(len(params), -1).amax(dim=1)
            errors.update(zip(indices, worst.unbind(0), strict=True))
        if per_parameter:
            return dict(sorted(errors.items()))
        if not errors:
            return torch.zeros(())
        return torch.stack([e.to(next(iter(errors.values())).device)
                            for e in errors.values()]).amax()

    @torch.no_grad()
    def stabilize(self) -> None:
        """Project every manifold parameter onto its set now, and its tangent state onto
        the tangent space there (what ``stabilize=k`` does every ``k`` steps)."""
        for group in self.param_groups:
            for p in group["params"]:
                manifold = manifold_of(p)
                if manifold is None:
                    continue
                p.copy_(manifold.projx(p))
                for name in self._tangent_state:
                    value = self.state[p].get(name)
                    if value is not None:
                        value.copy_(manifold.proju(p, value))
