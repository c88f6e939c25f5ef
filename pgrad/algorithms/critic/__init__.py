"""Learned-critic (pathwise) family: ∇θJ ≈ E[∇ₐQ_w(s, a)|_{a = a_θ(s)} · ∇θ a_θ(s)] — the policy gradient
flows through a learned action-value critic (DDPG, TD3, SAC). Its actor losses live in
`pgrad.estimators.pathwise`; the algorithms land here."""
