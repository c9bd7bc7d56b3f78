"""Task sets and the HDF5 task file format."""

import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from nips_plugin.data import tasks as tasks_module
from nips_plugin.data.tasks import H5Array, TaskSet, TaskWriter, default_split, load_tasks, save_tasks


def _arrays(S=12, P=5, c_f=1, c_u=2, grid=(9,), seed=0):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((S, P, c_f, *grid)).astype(np.float32)
    u = rng.standard_normal((S, P, c_u, *grid)).astype(np.float32)
    params = {"b": rng.random((S, *grid)).astype(np.float32),
              "a": rng.random((S, *grid)).astype(np.float32)}
    return f, u, params


def test_round_trip_all_fields(tmp_path):
    f, u, params = _arrays()
    split = ["train"] * 9 + ["test", "ood", "ood"]
    path = save_tasks(tmp_path / "t.h5", torch.from_numpy(f), u, params, split,
                      pde="darcy", domain="[0,1]", n_modes=7, h=0.125, periodic=False)
    tasks = load_tasks(path)
    np.testing.assert_array_equal(tasks.f, f)
    np.testing.assert_array_equal(tasks.u, u)
    assert tasks.f.dtype == tasks.u.dtype == np.float32
    assert tasks.param_names == ["a", "b"]
    for name in params:
        np.testing.assert_array_equal(tasks.params[name], params[name])
    assert tasks.split.tolist() == split
    assert tasks.attrs == dict(pde="darcy", domain="[0,1]", n_modes=7, h=0.125, periodic=False)
    assert [type(tasks.attrs[k]) for k in ("n_modes", "h", "periodic")] == [int, float, bool]
    assert (tasks.n_systems, tasks.n_pairs, tasks.grid_shape) == (12, 5, (9,))
    assert (tasks.in_components, tasks.out_components) == (1, 2)


@pytest.mark.parametrize("S, n_test", [(1, 1), (5, 1), (12, 1), (25, 2), (100, 10)])
def test_default_split_is_last_tenth(tmp_path, S, n_test):
    f, u, _ = _arrays(S=S)
    path = save_tasks(tmp_path / "t.h5", f, u)
    with h5py.File(path) as h5:
        assert "split" not in h5 and "params" not in h5
    tasks = load_tasks(path)
    assert tasks.split.tolist() == ["train"] * (S - n_test) + ["test"] * n_test
    assert tasks.params == {} and tasks.attrs == {}
    np.testing.assert_array_equal(default_split(S), tasks.split)


@pytest.mark.parametrize("grid", [(6, 5), (4, 3, 5)])
def test_multidimensional_grids(tmp_path, grid):
    f, u, params = _arrays(grid=grid)
    tasks = load_tasks(save_tasks(tmp_path / "t.h5", f, u, params))
    assert tasks.grid_shape == grid


def test_select_keeps_order_and_attrs():
    f, u, params = _arrays()
    split = ["test", "train", "ood", "train"] * 3
    tasks = TaskSet(f, u, params, split, {"pde": "x"})
    sub = tasks.select("train", "ood")
    idx = [i for i, s in enumerate(split) if s != "test"]
    np.testing.assert_array_equal(sub.f, f[idx])
    np.testing.assert_array_equal(sub.params["b"], params["b"][idx])
    assert sub.split.tolist() == [split[i] for i in idx] and sub.attrs == {"pde": "x"}
    np.testing.assert_array_equal(tasks.indices("ood"), [2, 6, 10])
    with pytest.raises(ValueError, match="split names"):
        tasks.select("val")


def _write(path, f=None, u=None, params=None, split=None):
    with h5py.File(path, "w") as h5:
        for name, value in (("f", f), ("u", u)):
            if value is not None:
                h5.create_dataset(name, data=value)
        if isinstance(params, dict):
            for name, value in params.items():
                h5.create_dataset(f"params/{name}", data=value)
        elif params is not None:
            h5.create_dataset("params", data=params)
        if split is not None:
            h5.create_dataset("split", data=split)
    return path


def _bad_files():
    f, u, params = _arrays()
    nan_f, inf_u = f.copy(), u.copy()
    nan_f[3, 1, 0, 4] = np.nan
    inf_u[0, 0, 1, 0] = np.inf
    huge = f.astype(np.float64)
    huge[0, 0, 0, 0] = 1e300  # finite in float64, inf in float32
    return {
        "missing f": (dict(u=u), "missing dataset"),
        "missing u": (dict(f=f), r"missing dataset\(s\) \['u'\]"),
        "pair count": (dict(f=f, u=u[:, :4]), "must be shaped"),
        "grid": (dict(f=f, u=u[..., :8]), "must be shaped"),
        "rank too low": (dict(f=f[..., 0], u=u[..., 0]), "1-3 D grid"),
        "rank too high": (dict(f=f.reshape(12, 5, 1, 9, 1, 1, 1), u=u.reshape(12, 5, 2, 9, 1, 1, 1)),
                          "1-3 D grid"),
        "nan": (dict(f=nan_f, u=u), "f has 1 non-finite"),
        "inf": (dict(f=f, u=inf_u), "u has 1 non-finite"),
        "overflow": (dict(f=huge, u=u), "non-finite"),
        "params shape": (dict(f=f, u=u, params={"b": params["b"][:, :4]}), r"params\['b'\]"),
        "params nan": (dict(f=f, u=u, params={"b": np.full((12, 9), np.nan)}), r"params\['b'\]"),
        "params not group": (dict(f=f, u=u, params=params["b"]), "must be a group"),
        "split value": (dict(f=f, u=u, split=["train"] * 11 + ["val"]), r"\['val'\]"),
        "split length": (dict(f=f, u=u, split=["train"] * 11), "split has shape"),
        "split numbers": (dict(f=f, u=u, split=np.zeros(12)), "must hold strings"),
    }


@pytest.mark.parametrize("case", list(_bad_files()))
def test_bad_files_raise_value_error_naming_file(tmp_path, case):
    content, message = _bad_files()[case]
    path = _write(tmp_path / "bad_file.h5", **content)
    with pytest.raises(ValueError, match=message) as err:
        load_tasks(path)
    assert "bad_file.h5" in str(err.value)


def test_not_hdf5_and_missing_file(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("not hdf5")
    with pytest.raises(ValueError, match="text.h5.*not a readable HDF5"):
        load_tasks(path)
    with pytest.raises(FileNotFoundError):
        load_tasks(tmp_path / "absent.h5")


def test_save_validates_before_writing(tmp_path):
    f, u, _ = _arrays()
    f[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        save_tasks(tmp_path / "t.h5", f, u)
    assert not (tmp_path / "t.h5").exists()
    with pytest.raises(ValueError, match="attribute 'grid'"):
        save_tasks(tmp_path / "t.h5", u, u, grid=[1, 2])


def test_response_asymmetry_tells_symmetric_operators_apart():
    from nips_plugin.training.zoo import SYMMETRY_TOLERANCE, resolve_context_fit
    rng = np.random.default_rng(1)
    S, P, N = 4, 6, 10
    A = rng.standard_normal((N, N))
    f = rng.standard_normal((S, P, 1, N))
    symmetric = TaskSet(f=f, u=f @ (A + A.T), split=["train"] * S)
    general = TaskSet(f=f, u=f @ A, split=["train"] * S)
    assert symmetric.response_asymmetry() < 1e-6
    assert general.response_asymmetry() > 0.5
    assert TaskSet(*_arrays()[:2]).response_asymmetry() == float("inf")   # c_f != c_u
    assert resolve_context_fit("auto", symmetric) == "symmetric"
    assert resolve_context_fit("auto", general) == resolve_context_fit("auto") == "least_squares"
    assert resolve_context_fit("none", symmetric) == "none"
    assert general.response_asymmetry() > SYMMETRY_TOLERANCE > symmetric.response_asymmetry()


# ---------------------------------------------------------------- out-of-core files

def test_bad_files_raise_value_error_naming_file_lazily(tmp_path):
    for case, (content, message) in _bad_files().items():
        path = _write(tmp_path / "bad_file.h5", **content)
        with pytest.raises(ValueError, match=message) as err:
            load_tasks(path, lazy=True)
        assert "bad_file.h5" in str(err.value) and "\n" not in str(err.value), case


@pytest.mark.parametrize("lazy", [False, True])
def test_truncated_or_overwritten_file_one_line_error(tmp_path, lazy):
    f, u, params = _arrays(S=20, grid=(9, 9))
    data = Path(save_tasks(tmp_path / "t.h5", f, u, params)).read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.h5 is not a readable HDF5 file") as err:
        load_tasks(truncated, lazy=lazy)
    assert "\n" not in str(err.value)
    # 0xff bytes over the chunk of system 13's inputs: float32 NaNs
    with h5py.File(tmp_path / "t.h5") as h5:
        chunk = h5["f"].id.get_chunk_info(13)
    start, end = chunk.byte_offset, chunk.byte_offset + chunk.size
    assert chunk.size == f[13].nbytes
    overwritten = tmp_path / "overwritten.h5"
    overwritten.write_bytes(data[:start] + b"\xff" * chunk.size + data[end:])
    with pytest.raises(ValueError, match=f"overwritten.h5: f has {f[13].size} non-finite") as err:
        load_tasks(overwritten, lazy=lazy)
    assert "\n" not in str(err.value)


def test_lazy_arrays_index_like_numpy_and_pickle_closed(tmp_path):
    f, u, params = _arrays(S=7, P=6, c_f=2, grid=(5, 4))
    split = ["train", "ood", "test", "train", "ood", "train", "test"]
    tasks = load_tasks(save_tasks(tmp_path / "t.h5", f, u, params, split, pde="x"), lazy=True)
    assert isinstance(tasks.f, H5Array) and tasks.lazy
    assert (tasks.f.shape, tasks.f.ndim, tasks.f.dtype, len(tasks.f)) == (f.shape, 5, np.float32, 7)
    pairs = np.array([4, 0, 4, 5, -1])  # unordered, repeated, negative
    keys = [3, -1, (2, 1), (2, pairs), (2, slice(1, 5)), (6, pairs, 1), (6, 2, 0, slice(1, 3)),
            (1, ..., 2), (1, np.arange(6) % 4 == 1), np.array([5, 1, 1]), (np.array([0, 6]), 3),
            slice(2, None, 2), (np.array([], int), 0), (), (..., slice(None, None, 2), 1)]
    for key in keys:
        np.testing.assert_array_equal(tasks.f[key], f[key], err_msg=str(key))
    np.testing.assert_array_equal(tasks.f, f)
    np.testing.assert_array_equal(np.asarray(tasks.u), u)
    with pytest.raises(ValueError, match="on the system axis or on the others"):
        tasks.f[np.array([0, 1]), np.array([0, 1])]
    with pytest.raises(ValueError, match="no new axes"):
        tasks.f[0, None]
    sub = tasks.select("ood", "test")
    idx = [1, 2, 4, 6]
    assert sub.lazy and sub.split.tolist() == [split[i] for i in idx]
    np.testing.assert_array_equal(sub.f, f[idx])
    np.testing.assert_array_equal(sub.u[1, pairs], u[2, pairs])
    tasks.f[0]  # opens the file in this process
    clone = pickle.loads(pickle.dumps(tasks))
    assert clone.f._h5 is None
    np.testing.assert_array_equal(clone.u[4, pairs], u[4, pairs])
    # validated float32 view of float64 data
    assert tasks.response_asymmetry() == TaskSet(f, u, params, split).response_asymmetry()


def test_load_mode_follows_file_size(tmp_path, monkeypatch):
    f, u, params = _arrays()
    path = save_tasks(tmp_path / "t.h5", f, u, params)
    size = os.path.getsize(path)
    monkeypatch.setattr(tasks_module, "EAGER_MAX_BYTES", size)
    assert not load_tasks(path).lazy and isinstance(load_tasks(path).f, np.ndarray)
    monkeypatch.setattr(tasks_module, "EAGER_MAX_BYTES", size - 1)
    assert load_tasks(path).lazy
    assert not load_tasks(path, lazy=False).lazy


def _file_contents(path):
    """Every dataset's (values, dtype, shape, chunks) and the attributes of an HDF5 file."""
    out = {}
    with h5py.File(path) as h5:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = (obj[()].tolist(), obj.dtype.str, obj.shape, obj.chunks, obj.maxshape)
        h5.visititems(visit)
        out["attrs"] = dict(h5.attrs)
    return out


@pytest.mark.parametrize("with_split", [False, True])
def test_writer_file_equals_save_tasks_file(tmp_path, with_split):
    f, u, params = _arrays(S=6, P=4, grid=(5, 3))
    split = ["train", "train", "test", "ood", "train", "test"] if with_split else None
    save_tasks(tmp_path / "saved.h5", f, u, params, split, pde="darcy", n_modes=3)
    with TaskWriter(tmp_path / "streamed.h5", pde="darcy", n_modes=3) as writer:
        for s in range(6):  # float64 and torch inputs: cast to float32 on the way
            writer.append(torch.from_numpy(f[s]), u[s].astype(np.float64),
                          {k: v[s] for k, v in params.items()}, split and split[s])
    streamed = _file_contents(tmp_path / "streamed.h5")
    assert streamed == _file_contents(tmp_path / "saved.h5")
    assert streamed["f"][3] == (1, 4, 1, 5, 3)  # one system per chunk
    np.testing.assert_array_equal(np.array(streamed["u"][0], np.float32), u)
    assert ("split" in streamed) == with_split


def test_writer_rejects_bad_systems_and_leaves_no_file(tmp_path):
    f, u, params = _arrays(S=3)
    params = {k: v[0] for k, v in params.items()}  # one system's
    path = tmp_path / "w.h5"
    cases = [
        (lambda w: w.append(f[0], u[0][:, :, :4]), "must be shaped"),
        (lambda w: (w.append(f[0], u[0]), w.append(f[1, :4], u[1, :4])), "system 1 has f"),
        (lambda w: (w.append(f[0], u[0], params), w.append(f[1], u[1])), "system 1 has f"),
        (lambda w: (w.append(f[0], u[0], split="train"), w.append(f[1], u[1])), "every system"),
        (lambda w: w.append(f[0], u[0], split="val"), r"\['val'\]"),
        (lambda w: w.append(np.full_like(f[0], np.inf), u[0]), "f has 45 non-finite"),
        (lambda w: w.append(f[0], u[0], {"b": params["b"][:3]}), r"params\['b'\]"),
        (lambda w: None, "no system was appended"),
    ]
    for action, message in cases:
        with pytest.raises(ValueError, match=message):
            with TaskWriter(path) as writer:
                action(writer)
        assert not path.exists(), message
    with pytest.raises(ValueError, match="attribute 'grid'"):
        TaskWriter(path, grid=[1, 2])
