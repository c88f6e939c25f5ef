import json
import pickle

import pytest
import torch

from pgrad.errors import CheckpointError
from pgrad.run.checkpoint import (
    flatten,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    unflatten,
)


def nested_state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "counters": {"step": 7, "ratio": float("inf"), "name": "x", "flag": True, "none": None},
        "pair": (1, 2.5),
        "rng": torch.get_rng_state(),
    }


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


def test_flatten_round_trip_keeps_int_keys_tuples_and_inf():
    state = nested_state()
    tree, tensors = flatten(state)
    json.dumps(tree)  # the non-tensor part is plain JSON
    assert_same(unflatten(json.loads(json.dumps(tree)), tensors), state)


def test_save_and_load_round_trip_and_pruning(tmp_path):
    state = nested_state()
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, state, keep=2)
    assert latest_checkpoint(tmp_path).name == "step_000000000040"
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_000000000030", "step_000000000040"]
    loaded, step = load_checkpoint(latest_checkpoint(tmp_path))
    assert step == 40
    assert_same(loaded, state)
    # Saving the same step again (as right after a resume) replaces it cleanly.
    save_checkpoint(tmp_path, 40, state, keep=2)
    assert_same(load_checkpoint(latest_checkpoint(tmp_path))[0], state)
    assert not list(tmp_path.glob(".*tmp")) and not list(tmp_path.glob(".*old"))


def test_truncated_tensor_file_is_refused_naming_it(tmp_path):
    folder = save_checkpoint(tmp_path, 1, nested_state())
    path = folder / "state.safetensors"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_corrupted_json_is_refused_naming_it(tmp_path):
    folder = save_checkpoint(tmp_path, 1, nested_state())
    path = folder / "state.json"
    path.write_text(path.read_text()[: len(path.read_text()) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    assert (
        str(path) in str(info.value) and "corrupted JSON" in str(info.value) and "\n" not in str(info.value)
    )


def test_corrupted_latest_pointer_is_refused_naming_it(tmp_path):
    save_checkpoint(tmp_path, 1, nested_state())
    (tmp_path / "latest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"latest\.json"):
        latest_checkpoint(tmp_path)


class _Sentinel:
    """Unpickling this creates a file: proof that something unpickled the payload."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("kind", ["pickle", "torch_save"])
def test_a_pickle_payload_is_never_unpickled(tmp_path, kind):
    folder = save_checkpoint(tmp_path / "ckpt", 1, nested_state())
    sentinel = tmp_path / "SENTINEL"
    tensor_file = folder / "state.safetensors"
    if kind == "pickle":
        tensor_file.write_bytes(pickle.dumps(_Sentinel(sentinel)))
    else:
        torch.save({"x": _Sentinel(sentinel)}, tensor_file)
    # Make the recorded hash match, so the refusal has to come from the format check, not the hash check.
    from pgrad.run.checkpoint import _sha256

    meta = json.loads((folder / "state.json").read_text())
    meta["sha256"] = _sha256(tensor_file)
    (folder / "state.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"state\.safetensors"):
        load_checkpoint(folder)
    assert not sentinel.exists()


def test_unsupported_values_are_refused_with_their_path():
    with pytest.raises(CheckpointError, match="/a/b"):
        flatten({"a": {"b": object()}})
