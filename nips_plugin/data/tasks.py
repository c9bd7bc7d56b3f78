"""In-context task sets and their HDF5 file format.

A *task set* holds ``S`` systems (one PDE each, with its own hidden parameter
field), and for each system ``P`` input/response pairs sampled on one common
grid of 1 to 3 dimensions.

HDF5 task file format
---------------------
One HDF5 file (written with h5py) holds:

``f`` : dataset, float, shape ``[S, P, c_f, *grid]``
    Input (loading) functions: system, pair, component, grid point.
``u`` : dataset, float, shape ``[S, P, c_u, *grid]``
    Responses ``u[s, p] = G_s[f[s, p]]``; same ``S``, ``P`` and grid as ``f``.
``params`` : group, optional
    One dataset per hidden field of the systems, shape ``[S, *grid]``
    (e.g. ``params/b`` for the Darcy permeability). Never fed to the models;
    kept for evaluation (inverse problems, oracle baselines).
``split`` : dataset, optional, strings, shape ``[S]``
    The role of each system: ``"train"``, ``"test"`` (unseen systems of the
    training law) or ``"ood"`` (systems of another law). Without it the last
    ``max(1, S // 10)`` systems (10%, at least one) are ``"test"`` and the
    others ``"train"``.
file attributes
    ``pde`` (name of the PDE), ``domain`` (e.g. ``"[0,1]^2"``) and any other
    generator parameter, each a plain ``str``, ``int``, ``float`` or ``bool``.

Grid dimensions are ``1 <= len(grid) <= 3``. Values are read as float32 and
must be finite. A file breaking any of these rules makes :func:`load_tasks`
raise ``ValueError`` naming the file and the problem.

Files larger than memory
------------------------
:func:`save_tasks` and :class:`TaskWriter` store ``f`` and ``u`` in chunks of
one system (``[1, P, c, *grid]``), so that reading the pairs of one system
touches one chunk. :func:`load_tasks` reads a file of at most
:data:`EAGER_MAX_BYTES` whole (fastest: one read, then in-memory indexing);
a larger file is opened *lazily*: ``f`` and ``u`` become :class:`H5Array`
objects that read from the file what is indexed (the loaders read the
``d + q`` pairs of each sample), after a validation pass that reads one
system at a time. The hidden fields and the split (``S`` values per grid
point at most) are always read whole. Memory then stays at a few systems
whatever the file's size.
"""

import copy
import math
import os
from dataclasses import dataclass, field, replace

import h5py
import numpy as np
import torch

SPLITS = ("train", "test", "ood")
"""Legal values of a system's split."""

EAGER_MAX_BYTES = 128 * 2**20
"""Task files up to this size (128 MiB) are read whole by :func:`load_tasks`, larger ones lazily."""


def default_split(n_systems):
    """The split used when none is given: the last 10% of the systems are ``"test"``.

    Parameters
    ----------
    n_systems : int
        Number of systems ``S``.

    Returns
    -------
    np.ndarray
        ``[S]`` strings: ``"train"`` for the first ``S - n_test`` systems and
        ``"test"`` for the last ``n_test = max(1, S // 10)``.
    """
    n_test = max(1, n_systems // 10)
    split = np.full(n_systems, "train", dtype="<U5")
    split[n_systems - n_test:] = "test"
    return split


def _to_numpy(a):
    """``np.ndarray`` view of an array-like or (detached, CPU) torch tensor."""
    if torch.is_tensor(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _check_real(name, dtype):
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {dtype}")


def _cast_float32(a):
    # float64 values beyond float32's range become inf, which the finiteness checks catch
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(a, dtype=np.float32)


def _n_nonfinite(a):
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def _nonfinite_error(name, n_bad):
    return ValueError(f"{name} has {n_bad} non-finite (NaN/inf) values")


def _as_float32(name, a):
    a = _to_numpy(a)
    _check_real(name, a.dtype)
    a = _cast_float32(a)
    n_bad = _n_nonfinite(a)
    if n_bad:
        raise _nonfinite_error(name, n_bad)
    return a


class H5Array:
    """A float32 dataset of a task file, read from the file when indexed.

    The ``f`` and ``u`` of a lazily loaded :class:`TaskSet`. Indexing is
    numpy's (without ``None``): ``a[s, ...]`` with an int ``s`` reads system
    ``s`` (one chunk) and indexes it as numpy would (``a[s, pairs]`` with
    ``pairs`` in any order); ``a[systems, ...]`` with an index array or slice
    stacks the systems, indexed alike (then without index arrays on the other
    axes). The result is an ``np.ndarray``; ``np.asarray(a)`` reads the whole
    array. The file is opened on first read in each process (after a
    ``fork`` the child opens its own) and never pickled open, so DataLoader
    worker processes each read through their own handle.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file.
    name : str
        The dataset, shaped ``[S_file, ...]``.
    rows : sequence of int, optional
        The rows (systems) of the dataset this array holds, in order;
        default all.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, path, name, rows=None):
        self.path, self.name = os.fspath(path), name
        with h5py.File(self.path, "r") as h5:
            self._file_shape = h5[name].shape
        self._h5 = self._pid = None
        self._set_rows(np.arange(self._file_shape[0]) if rows is None else rows)

    def _set_rows(self, rows):
        self._rows = np.asarray(rows, dtype=np.int64)
        self.shape = (len(self._rows), *self._file_shape[1:])

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))

    def __len__(self):
        return self.shape[0]

    def __getstate__(self):
        return {**self.__dict__, "_h5": None, "_pid": None}

    def _dataset(self):
        if self._h5 is None or self._pid != os.getpid():
            self._h5, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._h5[self.name]

    def _read_row(self, row, rest):
        """``dataset[row][rest]`` as float32."""
        # the row is one chunk, read whole: h5py's selection of scattered pairs is ~30x slower
        return _cast_float32(self._dataset()[row][rest])

    def __getitem__(self, key):
        key = (key if isinstance(key, tuple) else (key,)) or (slice(None),)
        if any(k is None for k in key):
            raise ValueError("an H5Array takes no new axes (None) in its index")
        ellipsis = [i for i, k in enumerate(key) if k is Ellipsis]
        if ellipsis:  # spelled out, so that key[0] indexes the systems
            i = ellipsis[0]
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        rows, rest = self._rows[key[0]], key[1:]
        if rows.ndim > 1 or (rows.ndim == 1 and any(np.ndim(k) for k in rest)):
            raise ValueError("an H5Array takes index arrays on the system axis or on the others, not both")
        if rows.ndim == 0:
            return self._read_row(int(rows), rest)
        # one system (one chunk) at a time, into the result
        out = np.empty((len(rows), *np.empty(self.shape[1:], np.bool_)[rest].shape), np.float32)
        for i, row in enumerate(rows):
            out[i] = self._read_row(int(row), rest)
        return out

    def __array__(self, dtype=None, copy=None):
        return self[:] if dtype is None else self[:].astype(dtype)

    def take(self, indices, axis=0):
        """The systems ``indices`` (as ``np.take``), still lazy; only ``axis=0``."""
        if axis != 0:
            raise ValueError(f"an H5Array takes systems (axis 0) only, got axis={axis}")
        taken = copy.copy(self)  # through __getstate__: without the open file
        taken._set_rows(self._rows[np.asarray(indices, dtype=np.int64)])
        return taken


def _plain(name, value):
    """Coerce an attribute to a plain Python scalar or raise ``ValueError``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, (str, int, float, bool)):
        raise ValueError(
            f"attribute {name!r} must be a plain str, int, float or bool, "
            f"got {type(value).__name__}"
        )
    return value


@dataclass
class TaskSet:
    """Input/response pairs of many systems, with their hidden fields and roles.

    Parameters
    ----------
    f : np.ndarray or H5Array
        ``[S, P, c_f, *grid]`` float32 input functions (an :class:`H5Array`
        when loaded lazily: read from the file when indexed).
    u : np.ndarray or H5Array
        ``[S, P, c_u, *grid]`` float32 responses, ``u[s, p] = G_s[f[s, p]]``.
    params : dict of str to np.ndarray, optional
        Hidden fields, each ``[S, *grid]`` float32. Empty by default.
    split : np.ndarray, optional
        ``[S]`` strings in ``{"train", "test", "ood"}``. Default
        :func:`default_split`.
    attrs : dict, optional
        ``pde``, ``domain`` and generator parameters (plain scalars).
    source : str, optional
        The task file the set was read from (:func:`load_tasks` sets it; runs record
        it so that interpretation can read the same data back), None otherwise.

    Raises
    ------
    ValueError
        When shapes disagree, values are not finite, a split value is illegal,
        the grid is not 1-3 dimensional or an attribute is not a plain scalar.
        Arrays (numpy or torch) are converted to float32 numpy arrays;
        :class:`H5Array` s are kept (:func:`load_tasks` checked their values).
    """

    f: np.ndarray
    u: np.ndarray
    params: dict = field(default_factory=dict)
    split: np.ndarray = None
    attrs: dict = field(default_factory=dict)
    source: str = None

    def __post_init__(self):
        if not isinstance(self.f, H5Array):
            self.f = _as_float32("f", self.f)
        if not isinstance(self.u, H5Array):
            self.u = _as_float32("u", self.u)
        if not 4 <= self.f.ndim <= 6:
            raise ValueError(
                f"f must be shaped [S, P, c_f, *grid] with a 1-3 D grid, "
                f"got shape {self.f.shape}"
            )
        S, P, _, *grid = self.f.shape
        if self.u.ndim != self.f.ndim or self.u.shape[:2] != (S, P) or list(self.u.shape[3:]) != grid:
            raise ValueError(
                f"u {self.u.shape} must be shaped [S, P, c_u, *grid] with the S, P and grid "
                f"of f {self.f.shape}"
            )
        if min(self.f.shape) < 1 or min(self.u.shape) < 1:
            raise ValueError(f"f {self.f.shape} and u {self.u.shape} must not be empty")
        params = {}
        for name, value in dict(self.params or {}).items():
            value = _as_float32(f"params[{name!r}]", value)
            if list(value.shape) != [S, *grid]:
                raise ValueError(
                    f"params[{name!r}] has shape {value.shape}, expected [S, *grid] = "
                    f"{(S, *grid)}"
                )
            params[str(name)] = value
        self.params = params
        split = default_split(S) if self.split is None else _to_numpy(self.split)
        if split.shape != (S,):
            raise ValueError(f"split has shape {split.shape}, expected [S] = ({S},)")
        split = [s.decode() if isinstance(s, bytes) else str(s) for s in split]
        bad = sorted(set(split) - set(SPLITS))
        if bad:
            raise ValueError(f"split values must be among {SPLITS}, got {bad}")
        self.split = np.asarray(split, dtype="<U5")
        self.attrs = {str(k): _plain(k, v) for k, v in dict(self.attrs or {}).items()}

    @property
    def lazy(self):
        """Whether ``f`` and ``u`` are read from the file when indexed (:class:`H5Array`)."""
        return isinstance(self.f, H5Array)

    @property
    def n_systems(self):
        """Number of systems ``S``."""
        return self.f.shape[0]

    @property
    def n_pairs(self):
        """Number of input/response pairs per system ``P``."""
        return self.f.shape[1]

    @property
    def grid_shape(self):
        """Grid shape, a tuple of 1 to 3 ints."""
        return tuple(self.f.shape[3:])

    @property
    def in_components(self):
        """Components ``c_f`` of an input function."""
        return self.f.shape[2]

    @property
    def out_components(self):
        """Components ``c_u`` of a response function."""
        return self.u.shape[2]

    @property
    def param_names(self):
        """Names of the hidden fields, sorted (the order they are stacked in)."""
        return sorted(self.params)

    def response_asymmetry(self, max_systems=20):
        r"""How far the training systems' operators are from symmetric, measured on their pairs.

        For a linear ``u = G f`` the Gram matrix ``A = F U^T``
        (``A_{ij} = <f_i, G f_j>``) is symmetric for every set of inputs exactly
        when ``G`` is symmetric on their span. Returns the median over the
        first ``max_systems`` training systems of
        ``||A - A^T||_F / ||A||_F`` (0: symmetric, as the Green's operators of
        self-adjoint problems such as Darcy flow; ``inf`` when ``c_f != c_u``,
        where symmetry has no meaning).
        """
        if self.in_components != self.out_components:
            return float("inf")
        systems = self.indices("train")
        systems = (systems if len(systems) else np.arange(self.n_systems))[:max_systems]
        values = []
        for s in systems:
            F = self.f[s].reshape(self.n_pairs, -1).astype(np.float64)
            A = F @ self.u[s].reshape(self.n_pairs, -1).astype(np.float64).T
            values.append(np.linalg.norm(A - A.T) / max(np.linalg.norm(A), np.finfo(float).tiny))
        return float(np.median(values))

    def indices(self, *split_names):
        """Indices of the systems whose split is one of ``split_names``, ascending."""
        bad = sorted(set(split_names) - set(SPLITS))
        if bad:
            raise ValueError(f"split names must be among {SPLITS}, got {bad}")
        return np.flatnonzero(np.isin(self.split, split_names))

    def select(self, *split_names):
        """A new TaskSet with only the systems of the given splits (order kept).

        Parameters
        ----------
        *split_names : str
            Any of ``"train"``, ``"test"``, ``"ood"``.

        Returns
        -------
        TaskSet
            Copies of the selected systems' arrays (lazy ones stay lazy); the
            same attributes.
        """
        idx = self.indices(*split_names)
        return replace(
            self, f=self.f.take(idx, axis=0), u=self.u.take(idx, axis=0),
            params={k: v[idx] for k, v in self.params.items()},
            split=self.split[idx], attrs=dict(self.attrs),
        )


class TaskWriter:
    """Write a task file system by system (format in the module docstring).

    For generators that produce one system at a time and data sets larger
    than memory: each :meth:`append` writes one system's chunk and nothing
    is kept in memory. Shapes are fixed by the first system. ::

        with TaskWriter("tasks.h5", pde="darcy", domain="[0,1]^2") as writer:
            for s in range(S):
                writer.append(f_s, u_s, {"permeability": b_s}, split="train")

    Parameters
    ----------
    path : str or os.PathLike
        Destination; overwritten if it exists (created at the first
        :meth:`append`). Removed again when the ``with`` block raises or no
        system was appended.
    **attrs
        File attributes (``pde``, ``domain``, ...), plain scalars.

    Raises
    ------
    ValueError
        When an attribute is not a plain scalar, a system breaks the format
        (shapes, non-finite values) or disagrees with the first one, splits
        are given for some systems only, or the writer is closed empty.
    """

    def __init__(self, path, **attrs):
        self.path = path
        self.attrs = {str(k): _plain(k, v) for k, v in attrs.items()}
        self._h5 = None
        self._split = []
        self.n_systems = 0

    def _create(self, f, u, params):
        if not 3 <= f.ndim <= 5:
            raise ValueError(f"a system's f must be shaped [P, c_f, *grid] with a 1-3 D grid, "
                             f"got shape {f.shape}")
        if min(f.shape) < 1 or min(u.shape) < 1:
            raise ValueError(f"f {f.shape} and u {u.shape} must not be empty")
        self._h5 = h5py.File(self.path, "w")
        for name, value in (("f", f), ("u", u), *((f"params/{k}", v) for k, v in params.items())):
            # one system per chunk: reading a system's pairs touches one chunk
            self._h5.create_dataset(name, shape=(0, *value.shape), maxshape=(None, *value.shape),
                                    chunks=(1, *value.shape), dtype=np.float32)
        self._h5.attrs.update(self.attrs)

    def append(self, f, u, params=None, split=None):
        """Write one system.

        Parameters
        ----------
        f : array-like
            ``[P, c_f, *grid]`` inputs of the system.
        u : array-like
            ``[P, c_u, *grid]`` responses, same ``P`` and grid.
        params : dict of str to array-like, optional
            Hidden fields ``[*grid]``; the same names for every system.
        split : {"train", "test", "ood"}, optional
            The system's role; give it for every system or for none (then
            readers use :func:`default_split`).
        """
        f, u = _as_float32("f", f), _as_float32("u", u)
        params = {str(k): _as_float32(f"params[{k!r}]", v) for k, v in (params or {}).items()}
        if u.ndim != f.ndim or u.shape[0] != f.shape[0] or u.shape[2:] != f.shape[2:]:
            raise ValueError(f"u {u.shape} must be shaped [P, c_u, *grid] with the P and grid "
                             f"of f {f.shape}")
        for name, value in params.items():
            if value.shape != f.shape[2:]:
                raise ValueError(f"params[{name!r}] has shape {value.shape}, expected the grid "
                                 f"{f.shape[2:]}")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split values must be among {SPLITS}, got [{split!r}]")
        if self._h5 is None:
            self._create(f, u, params)
        expected = {"f": f, "u": u, **{f"params/{k}": v for k, v in params.items()}}
        stored = {"f", "u", *(f"params/{k}" for k in self._h5.get("params", {}))}
        if set(expected) != stored or any(self._h5[k].shape[1:] != v.shape for k, v in expected.items()):
            raise ValueError(
                f"system {self.n_systems} has f {f.shape}, u {u.shape} and params "
                f"{sorted(params)}; the first had f {self._h5['f'].shape[1:]}, "
                f"u {self._h5['u'].shape[1:]} and params {sorted(self._h5.get('params', {}))}")
        if (split is None) != (not self._split) and self.n_systems:
            raise ValueError("give a split for every system or for none")
        for name, value in expected.items():
            self._h5[name].resize(self.n_systems + 1, axis=0)
            self._h5[name][self.n_systems] = value
        if split is not None:
            self._split.append(split)
        self.n_systems += 1

    def close(self):
        """Finish the file (writes the split); ``ValueError`` if no system was appended."""
        if self._h5 is None:
            raise ValueError(f"no system was appended to {self.path}")
        if self._split:
            self._h5.create_dataset("split", data=np.asarray(self._split, dtype=object),
                                    dtype=h5py.string_dtype())
        self._h5.close()
        self._h5 = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
            return
        if self._h5 is not None:  # a half-written file is no task file
            self._h5.close()
            self._h5 = None
        if os.path.exists(self.path):
            os.remove(self.path)


def save_tasks(path, f, u, params=None, split=None, **attrs):
    """Write a task file (format in the module docstring), one chunk per system.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; overwritten if it exists.
    f : np.ndarray or torch.Tensor
        ``[S, P, c_f, *grid]`` inputs.
    u : np.ndarray or torch.Tensor
        ``[S, P, c_u, *grid]`` responses.
    params : dict of str to array, optional
        Hidden fields ``[S, *grid]``, stored in the group ``params``.
    split : sequence of str, optional
        ``[S]`` system roles. When omitted no ``split`` dataset is written and
        readers use :func:`default_split`.
    **attrs
        File attributes (``pde``, ``domain``, ...), plain scalars.

    Returns
    -------
    str or os.PathLike
        ``path``.

    Raises
    ------
    ValueError
        When the data break the format (checked by :class:`TaskSet`) before
        anything is written.

    See Also
    --------
    TaskWriter : the same file, written system by system.
    """
    tasks = TaskSet(f, u, params or {}, split, attrs)
    with TaskWriter(path, **tasks.attrs) as writer:
        for s in range(tasks.n_systems):
            writer.append(tasks.f[s], tasks.u[s], {k: v[s] for k, v in tasks.params.items()},
                          None if split is None else tasks.split[s])
    return path


def _check_finite_by_system(h5):
    """Raise ``ValueError`` when ``f`` or ``u`` holds non-finite float32 values, one system in memory."""
    for name in ("f", "u"):
        dataset = h5[name]
        _check_real(name, dataset.dtype)
        n_bad = sum(_n_nonfinite(_cast_float32(dataset[s])) for s in range(dataset.shape[0]))
        if n_bad:
            raise _nonfinite_error(name, n_bad)


def load_tasks(path, lazy=None):
    """Read and validate a task file (format in the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        An HDF5 task file.
    lazy : bool, optional
        Read ``f`` and ``u`` when indexed (:class:`H5Array`) instead of
        whole. Default: lazily exactly when the file is larger than
        :data:`EAGER_MAX_BYTES` (128 MiB). Either way every value is
        checked, a lazy file one system at a time.

    Returns
    -------
    TaskSet
        With float32 arrays, and the default split when the file has none.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not HDF5 (or truncated) or breaks the format; the
        message names the file and the problem.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"task file {path} does not exist")
    if lazy is None:
        lazy = os.path.getsize(path) > EAGER_MAX_BYTES
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"task file {path} is not a readable HDF5 file: {err}") from err
    try:
        with h5:
            missing = [k for k in ("f", "u") if not isinstance(h5.get(k), h5py.Dataset)]
            if missing:
                raise ValueError(f"missing dataset(s) {missing}")
            params = h5.get("params")
            if params is not None and not isinstance(params, h5py.Group):
                raise ValueError("'params' must be a group of datasets")
            params = {} if params is None else {
                name: params[name][()] for name in params
                if isinstance(params[name], h5py.Dataset)
            }
            split = None
            if "split" in h5:
                split = h5["split"][()]
                if split.dtype.kind not in "OSU":
                    raise ValueError(f"dataset 'split' must hold strings, got dtype {split.dtype}")
            if lazy:
                f, u = H5Array(path, "f"), H5Array(path, "u")
                tasks = TaskSet(f, u, params, split, dict(h5.attrs), os.path.abspath(path))  # shapes checked first
                _check_finite_by_system(h5)
                return tasks
            return TaskSet(h5["f"][()], h5["u"][()], params, split, dict(h5.attrs), os.path.abspath(path))
    except (ValueError, OSError) as err:
        # OSError: data HDF5 cannot read (a corrupt chunk)
        raise ValueError(f"bad task file {path}: {err}") from err
