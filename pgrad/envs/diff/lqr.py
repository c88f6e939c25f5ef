"""A differentiable, batched linear-quadratic regulator: the smooth baseline of the differentiable-env family.

    x_{t+1} = A x_t + B u_t,        r_t = −(x_tᵀ Q x_t + u_tᵀ R u_t),        x_0 ~ N(0, x0_std² I)

State = observation = x [N, n], action u [N, m]. Nothing terminates (``terminated`` is all False);
episodes are cut by the caller after ``horizon`` steps (a truncation). Everything is differentiable in state
and action: BPTT through a rollout is the exact gradient of that rollout's return. For a linear policy
u = −K x + σ ε the expected finite-horizon return has a closed form (:meth:`DiffLQR.expected_return`,
differentiable in K), the ground truth against which the lab measures gradient estimators. With a stable A
the BPTT gradient is well behaved at any horizon; with an unstable closed loop A − BK it explodes
geometrically with the horizon.

Optimal control (references for what a learned controller should reach, both in float64):

* :meth:`DiffLQR.riccati_gains`: the finite-horizon optimum, time-varying gains K_0 … K_{T−1} from the
  backward Riccati recursion (P_T = 0; for t = T−1 … 0)

      K_t = γ (R + γ Bᵀ P_{t+1} B)⁻¹ Bᵀ P_{t+1} A,    P_t = Q + K_tᵀ R K_t + γ A_{K_t}ᵀ P_{t+1} A_{K_t}

  (A_K = A − B K), so the optimal return from x_0 is −x_0ᵀ P_0 x_0 (σ = 0). :meth:`DiffLQR.optimal_return` is
  its expectation, with exploration noise σ if asked (the gains do not depend on σ; the noise adds the same
  c_t as in ``expected_return``).
* :meth:`DiffLQR.optimal_gain`: the stationary gain K* of the infinite-horizon discounted problem (the fixed
  point of the recursion above, the discrete algebraic Riccati equation
  P = Q + γAᵀPA − γ²AᵀPB(R + γBᵀPB)⁻¹BᵀPA), computed by ``pgrad.lab.exact.lqr_optimal_gain``. It is the
  limit of K_0 as T → ∞; for a finite horizon ``expected_return(K*)`` ≤ ``optimal_return()``, with a gap
  that vanishes as T grows (the time-varying gains differ from K* only in the last few steps).

``action_bound`` (default ∞) clips each action coordinate to [−b, b] before it is applied and charged; the
closed forms ignore the bound (exact while no action saturates). The registered Gymnasium task
``pgrad/DiffLQR-v0`` uses ``DiffLQR.random(4, 2, seed=0, spectral_radius=0.95, action_bound=5)``.

Shapes: N envs, n = ``state_dim``, m = ``action_dim``. The system matrices are kept in float64 and used in the
dtype and on the device of the state passed to ``step`` (float32 and float64 both work); ``reset`` returns
states in the env's ``dtype``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pgrad.envs.diff._checks import (
    _action_bound,
    _batch_size,
    _check_action,
    _check_state,
    _float_dtype,
    _int,
    _real,
)
from pgrad.errors import ConfigError

__all__ = ["DiffLQR"]


def _matrix(name: str, x: object) -> Tensor:
    """A finite 2-D float64 CPU copy of ``x``."""
    try:
        x = torch.as_tensor(x.detach() if isinstance(x, Tensor) else x, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"DiffLQR: {name} must be a matrix, got {type(x).__name__}") from exc
    if x.ndim != 2:
        raise ConfigError(f"DiffLQR: {name} must be a 2-D matrix, got shape {tuple(x.shape)}")
    x = x.to("cpu", copy=True)
    if not torch.isfinite(x).all():
        raise ConfigError(f"DiffLQR: {name} has non-finite entries")
    return x


def _psd(name: str, x: Tensor, definite: bool) -> None:
    if not torch.allclose(x, x.T, atol=1e-10, rtol=1e-8):
        raise ConfigError(f"DiffLQR: {name} must be symmetric")
    low = torch.linalg.eigvalsh(x).min().item()
    if low < -1e-10 or (definite and low <= 0.0):
        kind = "positive definite" if definite else "positive semi-definite"
        raise ConfigError(f"DiffLQR: {name} must be {kind}, smallest eigenvalue {low:.3g}")


class DiffLQR:
    """Batched differentiable LQR with the functional interface of ``pgrad.envs.diff``.

    Args:
        A: [n, n] dynamics matrix.
        B: [n, m] input matrix.
        Q: [n, n] symmetric positive semi-definite state cost.
        R: [m, m] symmetric positive definite action cost.
        x0_std: standard deviation of each start-state coordinate (the origin is the fixed point every
            policy keeps, so use > 0).
        horizon: episode length the caller should use (the env itself never ends an episode).
        action_bound: b > 0, each action coordinate is clipped to [−b, b] (math.inf, the default: no clip).
        dtype: dtype of the states ``reset`` returns.
        device: device of the states ``reset`` returns.
    """

    name = "lqr"

    def __init__(
        self,
        A: Tensor,
        B: Tensor,
        Q: Tensor,
        R: Tensor,
        x0_std: float = 1.0,
        horizon: int = 50,
        *,
        action_bound: float = math.inf,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ):
        A_, B_, Q_, R_ = (_matrix(name, x) for name, x in (("A", A), ("B", B), ("Q", Q), ("R", R)))
        n, m = A_.shape[0], B_.shape[1]
        if n < 1 or m < 1:
            raise ConfigError(f"DiffLQR: need n >= 1 states and m >= 1 actions, got n={n}, m={m}")
        for name, x, shape in (("A", A_, (n, n)), ("B", B_, (n, m)), ("Q", Q_, (n, n)), ("R", R_, (m, m))):
            if tuple(x.shape) != shape:
                raise ConfigError(f"DiffLQR: {name} must have shape {shape}, got {tuple(x.shape)}")
        _psd("Q", Q_, definite=False)
        _psd("R", R_, definite=True)
        self.A, self.B, self.Q, self.R = A_, B_, Q_, R_
        self.x0_std = _real("x0_std", x0_std, low=0.0)
        self.horizon = _int("horizon", horizon, 1)
        self.action_bound = _action_bound(action_bound)
        self.dtype = _float_dtype(dtype)
        self.device = torch.device(device)
        self.state_dim = self.obs_dim = n
        self.action_dim = m
        self._cache: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor, Tensor, Tensor]] = {}

    @classmethod
    def random(
        cls,
        n: int,
        m: int,
        seed: int,
        *,
        horizon: int = 50,
        x0_std: float = 1.0,
        spectral_radius: float = 0.9,
        action_cost: float = 1.0,
        action_bound: float = math.inf,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> DiffLQR:
        """A random system with open-loop spectral radius exactly ``spectral_radius`` (< 1: stable).

        A = ρ G / max|eig G| and B = H / √n with G, H standard normal (float64, from ``seed``); Q = I_n,
        R = ``action_cost`` · I_m.
        """
        n, m = _int("n", n, 1), _int("m", m, 1)
        rho = _real("spectral_radius", spectral_radius, low=0.0, strict=True)
        cost = _real("action_cost", action_cost, low=0.0, strict=True)
        gen = torch.Generator().manual_seed(_int("seed", seed, 0))
        G = torch.randn(n, n, generator=gen, dtype=torch.float64)
        H = torch.randn(n, m, generator=gen, dtype=torch.float64)
        A = rho * G / torch.linalg.eigvals(G).abs().max()
        B = H / math.sqrt(n)
        Q = torch.eye(n, dtype=torch.float64)
        R = cost * torch.eye(m, dtype=torch.float64)
        return cls(A, B, Q, R, x0_std, horizon, action_bound=action_bound, dtype=dtype, device=device)

    def _matrices(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = tuple(
                x.to(dtype=like.dtype, device=like.device) for x in (self.A, self.B, self.Q, self.R)
            )
        return self._cache[key]

    def reset(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """Start states x_0 ~ N(0, x0_std² I), [N, n] in ``dtype`` (drawn in float64, so a float32 and a
        float64 env give the same states up to rounding for the same generator state)."""
        N = _batch_size(batch_size)
        noise = torch.randn(N, self.state_dim, generator=generator, dtype=torch.float64, device=self.device)
        return (self.x0_std * noise).to(self.dtype)

    def step(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(x', r, terminated) = (A x + B u, −(xᵀQx + uᵀRu), False) for every row; [N, n], [N], [N] bool
        (u clipped to [−action_bound, action_bound] first when the bound is finite)."""
        state = _check_state(state, self.state_dim, "DiffLQR")
        action = _check_action(action, state, self.action_dim, "DiffLQR")
        if math.isfinite(self.action_bound):
            action = action.clamp(-self.action_bound, self.action_bound)
        A, B, Q, R = self._matrices(state)
        reward = -((state @ Q) * state).sum(-1) - ((action @ R) * action).sum(-1)
        next_state = state @ A.T + action @ B.T
        terminated = torch.zeros(state.shape[0], dtype=torch.bool, device=state.device)
        return next_state, reward, terminated

    def observe(self, state: Tensor) -> Tensor:
        """The observation is the full state x."""
        return _check_state(state, self.state_dim, "DiffLQR")

    def expected_return(
        self, K: Tensor, gamma: float = 1.0, action_std: float = 0.0, horizon: int | None = None
    ) -> Tensor:
        """Exact E[Σ_{t<T} γᵗ r_t] for the linear policy u = −K x + σ ε, ε ~ N(0, I_m), x_0 ~ N(0, x0_std² I).

        Backward Riccati-style recursion for V_t(x) = −(xᵀ P_t x + c_t), with A_K = A − B K:

            P_T = 0,   c_T = 0
            P_t = Q + KᵀRK + γ A_Kᵀ P_{t+1} A_K
            c_t = σ² tr R + γ (σ² tr(Bᵀ P_{t+1} B) + c_{t+1})
            E[return] = −(x0_std² tr P_0 + c_0)

        Differentiable in K (autograd gives the exact ∇_K J). Computed in K's dtype and device.

        Args:
            K: [m, n] feedback gain.
            gamma: discount γ ∈ [0, 1].
            action_std: σ ≥ 0, the std of the Gaussian exploration noise added to every action.
            horizon: T, defaults to ``self.horizon``.

        Returns:
            0-d tensor.
        """
        if (
            not isinstance(K, Tensor)
            or not K.is_floating_point()
            or K.shape != (self.action_dim, self.state_dim)
        ):
            raise ConfigError(
                f"DiffLQR.expected_return: K must be a floating tensor of shape "
                f"{(self.action_dim, self.state_dim)}, got {K!r:.60}"
            )
        gamma = self._check_gamma(gamma)
        sigma2 = _real("action_std", action_std, low=0.0) ** 2
        T = self.horizon if horizon is None else _int("horizon", horizon, 1)
        A, B, Q, R = self._matrices(K)
        A_K = A - B @ K
        step_cost = Q + K.T @ R @ K
        P = torch.zeros_like(Q)
        c = K.new_zeros(())
        for _ in range(T):
            c = sigma2 * torch.trace(R) + gamma * (sigma2 * torch.trace(B.T @ P @ B) + c)
            P = step_cost + gamma * A_K.T @ P @ A_K
        return -(self.x0_std**2 * torch.trace(P) + c)

    # -- optimal control (references) ----------------------------------------------------------------------
    def _check_gamma(self, gamma: float) -> float:
        gamma = _real("gamma", gamma, low=0.0)
        if gamma > 1.0:
            raise ConfigError(f"gamma must be in [0, 1], got {gamma}")
        return gamma

    def riccati_gains(self, gamma: float = 1.0, horizon: int | None = None) -> tuple[Tensor, Tensor]:
        """The finite-horizon optimal controller u_t = −K_t x_t by the backward Riccati recursion (module
        docstring); float64.

        Args:
            gamma: discount γ ∈ [0, 1].
            horizon: T, defaults to ``self.horizon``.

        Returns:
            (K [T, m, n] with K[t] the gain at step t, P_0 [n, n]); the optimal return from x_0 is
            −x_0ᵀ P_0 x_0.
        """
        gamma = self._check_gamma(gamma)
        T = self.horizon if horizon is None else _int("horizon", horizon, 1)
        A, B, Q, R = self.A, self.B, self.Q, self.R
        P = torch.zeros_like(Q)
        gains = []
        for _ in range(T):
            K = gamma * torch.linalg.solve(R + gamma * B.T @ P @ B, B.T @ P @ A)
            A_K = A - B @ K
            P = Q + K.T @ R @ K + gamma * A_K.T @ P @ A_K
            P = 0.5 * (P + P.T)
            gains.append(K)
        return torch.stack(gains[::-1]), P

    def optimal_return(
        self, gamma: float = 1.0, action_std: float = 0.0, horizon: int | None = None
    ) -> float:
        """E[Σ_{t<T} γᵗ r_t] under the time-varying optimal gains of :meth:`riccati_gains` (plus exploration
        noise σ = ``action_std``): the best any policy u_t = π_t(x_t) + σε_t can do. Same recursion as
        :meth:`expected_return` with K_t in place of K."""
        gains, _ = self.riccati_gains(gamma, horizon)
        gamma = self._check_gamma(gamma)
        sigma2 = _real("action_std", action_std, low=0.0) ** 2
        A, B, Q, R = self.A, self.B, self.Q, self.R
        P, c = torch.zeros_like(Q), 0.0
        for K in gains.flip(0):
            c = sigma2 * torch.trace(R).item() + gamma * (sigma2 * torch.trace(B.T @ P @ B).item() + c)
            A_K = A - B @ K
            P = Q + K.T @ R @ K + gamma * A_K.T @ P @ A_K
        return -(self.x0_std**2 * torch.trace(P).item() + c)

    def optimal_gain(self, gamma: float = 1.0) -> Tensor:
        """The stationary infinite-horizon optimal gain K* [m, n] (float64) of the γ-discounted problem, from
        the discrete algebraic Riccati equation (`discounted_riccati_gain`). With γ = 1 it needs a
        stabilisable (A, B) (any A with spectral radius < 1 is); ``ConfigError`` if the iteration diverges."""
        return discounted_riccati_gain(self.A, self.B, self.Q, self.R, self._check_gamma(gamma), "DiffLQR")


def discounted_riccati_gain(
    A: Tensor,
    B: Tensor,
    Q: Tensor,
    R: Tensor,
    gamma: float,
    name: str,
    tol: float = 1e-13,
    max_iterations: int = 100_000,
) -> Tensor:
    """The optimal stationary gain K* of the γ-discounted LQR (x' = Ax + Bu, cost xᵀQx + uᵀRu), by iterating
    P ← Q + KᵀRK + γ A_Kᵀ P A_K with K = γ(R + γBᵀPB)⁻¹BᵀPA and A_K = A − BK to convergence (independent of
    exploration noise). ``ConfigError`` naming ``name`` if the iteration does not converge."""
    P = Q.clone()
    for _ in range(max_iterations):
        K = gamma * torch.linalg.solve(R + gamma * B.T @ P @ B, B.T @ P @ A)
        A_K = A - B @ K
        new = Q + K.T @ R @ K + gamma * A_K.T @ P @ A_K
        if not torch.isfinite(new).all():
            break
        if (new - P).abs().max() <= tol * max(1.0, P.abs().max().item()):
            P = new
            return gamma * torch.linalg.solve(R + gamma * B.T @ P @ B, B.T @ P @ A)
        P = new
    raise ConfigError(
        f"optimal gain of '{name}': the Riccati iteration did not converge (is (A, B) stabilisable?)"
    )
