"""Differentiable-simulator family: ∇θJ = ∇θ Σₜ γᵗ r(sₜ(θ), aₜ(θ)) — backpropagation through time in a
differentiable env (`pgrad.envs.diff`), alone (APG) or with a learned critic closing a short window (SHAC,
AHAC, SAPO). Its loss is `pgrad.estimators.bptt_loss`; the algorithms land here."""
