"""Score-function family: ∇θJ ≈ E[∇θ log πθ(a|s) · Â], the likelihood-ratio estimate with a weight Â per
action (whole return, reward-to-go, baselined return, n-step / GAE advantage, group-relative outcome)."""
