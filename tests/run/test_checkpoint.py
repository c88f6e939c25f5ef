import hashlib
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
    # Make the recorded hashes match, so the refusal has to come from the format check, not the hash checks.
    from pgrad.run.checkpoint import _sha256, json_checksum

    meta = json.loads((folder / "state.json").read_text())
    meta["sha256"] = _sha256(tensor_file)
    meta["checksum"] = json_checksum(meta)
    (folder / "state.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"state\.safetensors"):
        load_checkpoint(folder)
    assert not sentinel.exists()


def test_unsupported_values_are_refused_with_their_path():
    with pytest.raises(CheckpointError, match="/a/b"):
        flatten({"a": {"b": object()}})


# -- integrity of the JSON files and of latest.json ------------------------------------------------------
def rewrite_json(path, checksum=True, **changes):
    """Edit a checkpoint JSON file; with `checksum`, re-sign it so only the check under test can refuse it."""
    from pgrad.run.checkpoint import json_checksum

    data = json.loads(path.read_text())
    data.update(changes)
    if checksum:
        data["checksum"] = json_checksum(data)
    path.write_text(json.dumps(data))


def refusal(call, *args, **kwargs):
    """The one-line message of the CheckpointError `call` raises."""
    with pytest.raises(CheckpointError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_an_edited_value_in_state_json_is_refused_by_its_checksum(tmp_path):
    folder = save_checkpoint(tmp_path, 5, nested_state())
    path = folder / "state.json"
    meta = json.loads(path.read_text())
    meta["state"]["optimizer"]["param_groups"][0]["lr"] = 0.002  # valid JSON, plausible value
    path.write_text(json.dumps(meta))
    message = refusal(load_checkpoint, folder)
    assert message.startswith(f"{path}: ") and "checksum" in message


def test_an_edited_step_in_latest_json_is_refused_by_its_checksum(tmp_path):
    save_checkpoint(tmp_path, 5, nested_state())
    save_checkpoint(tmp_path, 6, nested_state())
    pointer = tmp_path / "latest.json"
    rewrite_json(pointer, checksum=False, step=5, checkpoint="step_000000000005")  # an existing folder
    message = refusal(latest_checkpoint, tmp_path)
    assert message.startswith(f"{pointer}: ") and "checksum" in message


def test_a_missing_checksum_is_refused(tmp_path):
    folder = save_checkpoint(tmp_path, 5, nested_state())
    meta = json.loads((folder / "state.json").read_text())
    del meta["checksum"]
    (folder / "state.json").write_text(json.dumps(meta))
    assert "'checksum' is missing" in refusal(load_checkpoint, folder)


def documented_checksum(payload):
    """The `checksum` of a format-2 JSON file as pgrad/run/checkpoint.py documents it, written out here on its
    own: SHA-256 (hex) of the JSON of every other field, keys sorted, no whitespace (',' and ':'), ASCII."""
    body = {k: v for k, v in payload.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def test_checksums_are_the_documented_canonical_json_so_written_checkpoints_stay_loadable(tmp_path):
    """A change of the canonical form on both the writing and the checking side would pass every round trip
    but refuse every checkpoint written before it: the form is pinned here, and by one stored value."""
    state = {"weights": torch.arange(3.0), "note": "λ ≥ 0", "counters": {"b": 1, "a": [0.5, None]}}
    folder = save_checkpoint(tmp_path, 5, state)
    for path in (folder / "state.json", tmp_path / "latest.json"):
        data = json.loads(path.read_text())
        assert data["checksum"] == documented_checksum(data), path.name
    assert json.loads((tmp_path / "latest.json").read_text()) == {  # fixed by the format for step 5
        "format": "pgrad-checkpoint/2",
        "step": 5,
        "checkpoint": "step_000000000005",
        "checksum": "18a6bbc95d991ef75e63f5bdff7e5a5540ac7ec7550cc7b4ff9a4f4cd19e773c",
    }
    # Laid out by another writer (indented, keys in another order, non-ASCII as is), signed as documented.
    for path in (folder / "state.json", tmp_path / "latest.json"):
        data = dict(reversed(list(json.loads(path.read_text()).items())))
        data["checksum"] = documented_checksum(data)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    loaded, step = load_checkpoint(latest_checkpoint(tmp_path))
    assert step == 5 and loaded["note"] == "λ ≥ 0" and torch.equal(loaded["weights"], torch.arange(3.0))


@pytest.mark.parametrize(
    "name",
    ["/etc", "../step_000000000005", "step_000000000005/../../x", "step_5x", "best", 5, None],
)
def test_latest_json_naming_anything_but_a_step_folder_is_refused(tmp_path, name):
    save_checkpoint(tmp_path / "ckpt", 5, nested_state())
    pointer = tmp_path / "ckpt" / "latest.json"
    rewrite_json(pointer, checkpoint=name)
    message = refusal(latest_checkpoint, tmp_path / "ckpt")
    assert message.startswith(
        f"{pointer}: key 'checkpoint' is {name!r}, not the name of a step_<digits> folder"
    )


def test_latest_json_whose_step_and_name_disagree_is_refused(tmp_path):
    save_checkpoint(tmp_path, 5, nested_state())
    save_checkpoint(tmp_path, 6, nested_state())
    pointer = tmp_path / "latest.json"
    rewrite_json(pointer, step=6, checkpoint="step_000000000005")
    assert refusal(latest_checkpoint, tmp_path).startswith(f"{pointer}: key 'checkpoint'")


def test_latest_json_through_a_symlink_leading_outside_is_refused(tmp_path):
    elsewhere = save_checkpoint(tmp_path / "other", 9, nested_state())
    save_checkpoint(tmp_path / "ckpt", 5, nested_state())
    pointer = tmp_path / "ckpt" / "latest.json"
    (tmp_path / "ckpt" / "step_000000000009").symlink_to(elsewhere, target_is_directory=True)
    rewrite_json(pointer, step=9, checkpoint="step_000000000009")
    message = refusal(latest_checkpoint, tmp_path / "ckpt")
    assert message.startswith(f"{pointer}: key 'checkpoint'") and "outside" in message


def test_a_state_file_linked_from_outside_its_folder_is_refused(tmp_path):
    elsewhere = save_checkpoint(tmp_path / "other", 5, nested_state())
    folder = save_checkpoint(tmp_path / "ckpt", 5, {"x": torch.zeros(2)})
    (folder / "state.safetensors").unlink()
    (folder / "state.safetensors").symlink_to(elsewhere / "state.safetensors")
    message = refusal(load_checkpoint, folder)
    assert message.startswith(f"{folder / 'state.safetensors'}: ") and "outside" in message


def test_latest_json_pointing_at_a_missing_folder_is_refused_naming_it(tmp_path):
    import shutil

    folder = save_checkpoint(tmp_path, 5, nested_state())
    shutil.rmtree(folder)
    assert refusal(latest_checkpoint, tmp_path).startswith(f"{tmp_path / 'latest.json'}: key 'checkpoint'")


def test_a_deleted_latest_json_beside_checkpoints_is_reported_as_such(tmp_path):
    save_checkpoint(tmp_path, 5, nested_state())
    (tmp_path / "latest.json").unlink()
    assert "file not found, although" in refusal(latest_checkpoint, tmp_path)


def test_a_state_json_moved_to_another_step_folder_is_refused(tmp_path):
    folder = save_checkpoint(tmp_path, 5, nested_state())
    moved = folder.rename(tmp_path / "step_000000000006")
    message = refusal(load_checkpoint, moved)
    assert message.startswith(f"{moved / 'state.json'}: key 'step' is 5")


def test_tensors_the_tree_does_not_refer_to_are_refused(tmp_path):
    from safetensors.torch import save_file

    from pgrad.run.checkpoint import _sha256

    folder = save_checkpoint(tmp_path, 5, {"a": torch.zeros(2)})
    save_file({"/a": torch.zeros(2), "/smuggled": torch.ones(3)}, folder / "state.safetensors")
    rewrite_json(folder / "state.json", sha256=_sha256(folder / "state.safetensors"))
    message = refusal(load_checkpoint, folder)
    assert message.startswith(f"{folder / 'state.json'}: ") and "/smuggled" in message


def test_format_1_checkpoints_still_load(tmp_path):
    """Format 1 had no JSON checksums: such checkpoints are read (their tensor file is still verified)."""
    state = nested_state()
    folder = save_checkpoint(tmp_path, 5, state)
    for path in (folder / "state.json", tmp_path / "latest.json"):
        data = json.loads(path.read_text())
        del data["checksum"]
        data["format"] = "pgrad-checkpoint/1"
        path.write_text(json.dumps(data))
    loaded, step = load_checkpoint(latest_checkpoint(tmp_path))
    assert step == 5
    assert_same(loaded, state)
    (folder / "state.safetensors").write_bytes((folder / "state.safetensors").read_bytes()[:-1])
    assert "SHA-256" in refusal(load_checkpoint, folder)


@pytest.mark.parametrize("name", ["state.json", "state.safetensors"])
def test_a_checkpoint_file_that_cannot_be_read_is_refused_naming_it(tmp_path, name):
    folder = save_checkpoint(tmp_path, 5, nested_state())
    (folder / name).unlink()
    (folder / name).mkdir()  # e.g. a directory in its place
    assert refusal(load_checkpoint, folder).startswith(f"{folder / name}: cannot be read")


def test_an_unknown_format_is_refused(tmp_path):
    folder = save_checkpoint(tmp_path, 5, nested_state())
    rewrite_json(folder / "state.json", format="pgrad-checkpoint/3")
    assert "not a pgrad checkpoint file" in refusal(load_checkpoint, folder)


# -- validate_state ----------------------------------------------------------------------------------------
def trained_and_fresh(features=3, dtype=torch.float32):
    """(state of a model trained one Adam step, state of a freshly built one), as the trainer nests them."""

    def build(features):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(features, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        return model.to(dtype), torch.optim.Adam(model.parameters(), lr=1e-3)

    model, opt = build(3)
    model(torch.randn(5, 3, dtype=dtype)).sum().backward()
    opt.step()
    fresh_model, fresh_opt = build(features)
    counters = {"step": 7, "ratio": 0.5, "name": "x", "flag": True, "next_eval": None, "returns": [1.0, 2.0]}
    trained = {"model": model.state_dict(), "optimizer": opt.state_dict(), "counters": counters}
    fresh = {
        "model": fresh_model.state_dict(),
        "optimizer": fresh_opt.state_dict(),
        "counters": {**counters, "step": 0, "ratio": 1, "next_eval": 100, "returns": []},
    }
    return trained, fresh, fresh_opt


def validation_error(expected, loaded, file="ckpt/step_000000000005", **kwargs):
    from pgrad.run.checkpoint import validate_state

    return refusal(validate_state, expected, loaded, file, **kwargs)


def test_validate_accepts_a_trained_state_against_a_fresh_model():
    from pgrad.run.checkpoint import optimizer_param_shapes, validate_state

    trained, fresh, fresh_opt = trained_and_fresh()
    assert not fresh["optimizer"]["state"] and trained["optimizer"]["state"]
    validate_state(fresh, trained, "ckpt")
    validate_state(fresh, trained, "ckpt", param_shapes={"/optimizer": optimizer_param_shapes(fresh_opt)})
    validate_state(trained, trained, "ckpt")  # and a trained one against itself


def test_validate_refuses_a_shape_mismatch_naming_the_tensor_file_and_key():
    trained, fresh, _ = trained_and_fresh(features=8)
    message = validation_error(fresh, trained)
    assert message.startswith(
        "ckpt/step_000000000005/state.safetensors: /model/0.weight has shape (4, 3), the model expects (4, 8)"
    )


def test_validate_refuses_a_dtype_mismatch():
    trained, _, _ = trained_and_fresh()
    _, fresh64, _ = trained_and_fresh(dtype=torch.float64)
    message = validation_error(fresh64, trained)
    assert "state.safetensors: /model/0.weight has dtype float32, the model expects float64" in message
    assert "more problems" in message  # every parameter differs: the first is named, the others counted


def test_validate_refuses_a_missing_key_naming_state_json():
    trained, fresh, _ = trained_and_fresh()
    del trained["model"]["2.bias"]
    message = validation_error(fresh, trained)
    file = "ckpt/step_000000000005/state.json"
    assert message == f"{file}: /model/2.bias is missing from the checkpoint (the model has it)"


def test_validate_refuses_an_extra_key():
    trained, fresh, _ = trained_and_fresh()
    trained["model"]["3.weight"] = torch.zeros(2, 2)
    assert "/model/3.weight is in the checkpoint but not in the model" in validation_error(fresh, trained)


def test_optional_keys_may_be_missing_or_extra():
    from pgrad.run.checkpoint import validate_state

    trained, fresh, _ = trained_and_fresh()
    trained["rng"] = {"rng/torch": torch.zeros(3, dtype=torch.uint8), "rng/cuda0": torch.zeros(3)}
    fresh["rng"] = {"rng/torch": torch.zeros(3, dtype=torch.uint8)}
    del trained["counters"]["flag"]
    validate_state(fresh, trained, "ckpt", optional=["/rng/rng/cuda*", "/counters/flag"])
    assert "/rng/rng/cuda0" in validation_error(fresh, trained, optional=["/counters/flag"])


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("step", "7", "/counters/step is a string, the model expects a number"),
        ("flag", 1, "/counters/flag is a number, the model expects a bool"),
        ("name", ["x"], "/counters/name is a list, the model expects a string"),
        ("returns", {"0": 1.0}, "/counters/returns is a dict, the model expects a list"),
        ("ratio", torch.tensor(0.5), "/counters/ratio is a tensor, the model expects a number"),
    ],
)
def test_validate_refuses_a_leaf_of_another_kind(key, value, expected):
    trained, fresh, _ = trained_and_fresh()
    trained["counters"][key] = value
    message = validation_error(fresh, trained)
    assert message == f"ckpt/step_000000000005/state.json: {expected}"


def test_validate_tensor_expected_but_number_found():
    trained, fresh, _ = trained_and_fresh()
    trained["model"]["0.bias"] = 0.0
    assert "/model/0.bias is a number, the model expects a float32 tensor of shape (4,)" in validation_error(
        fresh, trained
    )


def test_validate_lists_must_match_in_length_unless_empty_in_the_model():
    from pgrad.run.checkpoint import validate_state

    expected = {"python": [3, [0] * 4, None], "returns": []}
    validate_state(expected, {"python": [3, [1] * 4, 0.5], "returns": [1.0, {"any": torch.zeros(2)}]}, "c")
    message = validation_error(expected, {"python": [3, [1] * 5, None], "returns": []})
    assert "/python/1 has 5 items, the model expects 4" in message


def test_validate_names_a_given_file_as_it_is_and_the_prefix_in_key_paths():
    trained, fresh, _ = trained_and_fresh(features=8)
    message = validation_error(
        fresh["model"], trained["model"], file="x/state.json", prefix="/policy/weights"
    )
    assert message.startswith("x/state.json: /policy/weights/0.weight has shape (4, 3)")


# The optimiser-state rule: a fresh optimiser's `state` is {}, a trained one's is keyed by parameter index.
def test_optimizer_state_for_a_parameter_the_model_lacks_is_refused():
    trained, fresh, _ = trained_and_fresh()
    trained["optimizer"]["state"][4] = trained["optimizer"]["state"][0]
    message = validation_error(fresh, trained)
    assert "/optimizer/state/4 is state for parameter 4, which the model's optimiser does not have" in message


def test_optimizer_state_with_inconsistent_shapes_is_refused():
    trained, fresh, _ = trained_and_fresh()
    trained["optimizer"]["state"][0]["exp_avg_sq"] = torch.zeros(4, 8)
    message = validation_error(fresh, trained)
    assert "/optimizer/state/0/exp_avg_sq has shape (4, 8), /optimizer/state/0/exp_avg has (4, 3)" in message


def test_optimizer_state_of_the_wrong_parameter_shape_is_refused_given_param_shapes():
    from pgrad.run.checkpoint import optimizer_param_shapes, validate_state

    trained, fresh, fresh_opt = trained_and_fresh()
    state = trained["optimizer"]["state"]
    state[0], state[2] = state[2], state[0]  # self-consistent entries, swapped between parameters
    validate_state(fresh, trained, "ckpt")  # without the parameter shapes this cannot be seen…
    shapes = {"/optimizer": optimizer_param_shapes(fresh_opt)}
    message = validation_error(fresh, trained, param_shapes=shapes)  # …with them it is
    assert "/optimizer/state/0/exp_avg has shape (2, 4), parameter 0 of the model has (4, 3)" in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "exp_avg",
            torch.zeros(4, 3, dtype=torch.int64),
            "state.safetensors: /optimizer/state/0/exp_avg has dtype int64, per-parameter optimiser state",
        ),
        (
            "step",
            torch.tensor(True),
            "state.safetensors: /optimizer/state/0/step has dtype bool, the model expects a real scalar",
        ),
        (
            "extra",
            [1, 2],
            "state.json: /optimizer/state/0/extra is a list; per-parameter optimiser state holds tensors",
        ),
    ],
)
def test_optimizer_state_entries_of_the_wrong_kind_are_refused(name, value, expected):
    trained, fresh, _ = trained_and_fresh()
    trained["optimizer"]["state"][0][name] = value
    assert expected in validation_error(fresh, trained)


def test_optimizer_param_groups_must_list_the_same_parameters():
    trained, fresh, _ = trained_and_fresh()
    trained["optimizer"]["param_groups"][0]["params"] = [0, 1, 2]
    assert "/optimizer/param_groups/0/params is [0, 1, 2], the model's optimiser has [0, 1, 2, 3]" in (
        validation_error(fresh, trained)
    )
    trained["optimizer"]["param_groups"].append(dict(trained["optimizer"]["param_groups"][0]))
    assert "/optimizer/param_groups has 2 items" in validation_error(fresh, trained)


def test_optimizer_hyper_parameters_on_one_side_only_are_tolerated_but_checked_when_shared():
    from pgrad.run.checkpoint import validate_state

    trained, fresh, _ = trained_and_fresh()
    group = trained["optimizer"]["param_groups"][0]
    group["step"] = 1  # e.g. LaProp adds one once it has stepped
    del group["decoupled_weight_decay"]  # e.g. a checkpoint from an older torch
    validate_state(fresh, trained, "ckpt")
    group["lr"] = "fast"
    assert "/optimizer/param_groups/0/lr is a string, the model expects a number" in validation_error(
        fresh, trained
    )


def test_load_checkpoint_validates_against_expected(tmp_path):
    trained, fresh, _ = trained_and_fresh()
    folder = save_checkpoint(tmp_path, 5, trained)
    state, step = load_checkpoint(folder, expected=fresh)
    assert step == 5
    assert_same(state, trained)
    _, other, _ = trained_and_fresh(features=8)
    message = refusal(load_checkpoint, folder, expected=other)
    assert message.startswith(f"{folder / 'state.safetensors'}: /model/0.weight has shape (4, 3)")


def test_validate_refuses_per_parameter_optimizer_state_that_is_not_a_dict():
    trained, fresh, _ = trained_and_fresh()
    trained["optimizer"]["state"][0] = 1.5
    message = validation_error(fresh, trained)
    assert "/optimizer/state/0 is a number, the model expects a dict of per-parameter state" in message


def test_validate_counts_one_more_problem_in_the_singular():
    trained, fresh, _ = trained_and_fresh()
    del trained["model"]["2.bias"], trained["model"]["2.weight"]
    message = validation_error(fresh, trained)
    assert message.endswith("(and 1 more problem)")
