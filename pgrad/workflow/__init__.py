"""The researcher's workflow around training: compare runs across seeds (rliable), tune with Optuna, record a
video, export the policy (ONNX / TorchScript) and explain a run in a report.

Each command lives in its own module with a Python function (`pgrad.compare`, `pgrad.tune`, ...) and a
`main(argv)` that `pgrad <command>` calls. Optional dependencies are imported inside the functions that need
them, with one line saying which extra to install when they are missing (`pgrad.errors.optional_import`).
"""
