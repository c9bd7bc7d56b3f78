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
"""

import os
from dataclasses import dataclass, field, replace

import h5py
import numpy as np
import torch

SPLITS = ("train", "test", "ood")
"""Legal values of a system's split."""


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


def _as_float32(name, a):
    a = _to_numpy(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    # checked after the cast: float64 values beyond float32's range become inf
    with np.errstate(over="ignore"):
        a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        n_bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{name} has {n_bad} non-finite (NaN/inf) values")
    return a


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
    f : np.ndarray
        ``[S, P, c_f, *grid]`` float32 input functions.
    u : np.ndarray
        ``[S, P, c_u, *grid]`` float32 responses, ``u[s, p] = G_s[f[s, p]]``.
    params : dict of str to np.ndarray, optional
        Hidden fields, each ``[S, *grid]`` float32. Empty by default.
    split : np.ndarray, optional
        ``[S]`` strings in ``{"train", "test", "ood"}``. Default
        :func:`default_split`.
    attrs : dict, optional
        ``pde``, ``domain`` and generator parameters (plain scalars).

    Raises
    ------
    ValueError
        When shapes disagree, values are not finite, a split value is illegal,
        the grid is not 1-3 dimensional or an attribute is not a plain scalar.
        Arrays (numpy or torch) are converted to float32 numpy arrays.
    """

    f: np.ndarray
    u: np.ndarray
    params: dict = field(default_factory=dict)
    split: np.ndarray = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.f = _as_float32("f", self.f)
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
            Copies of the selected systems' arrays; the same attributes.
        """
        idx = self.indices(*split_names)
        return replace(
            self, f=self.f[idx], u=self.u[idx],
            params={k: v[idx] for k, v in self.params.items()},
            split=self.split[idx], attrs=dict(self.attrs),
        )


def save_tasks(path, f, u, params=None, split=None, **attrs):
    """Write a task file (format in the module docstring).

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
    """
    tasks = TaskSet(f, u, params or {}, split, attrs)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("f", data=tasks.f)
        h5.create_dataset("u", data=tasks.u)
        if tasks.params:
            group = h5.create_group("params")
            for name, value in tasks.params.items():
                group.create_dataset(name, data=value)
        if split is not None:
            h5.create_dataset("split", data=tasks.split.astype(object),
                              dtype=h5py.string_dtype())
        h5.attrs.update(tasks.attrs)
    return path


def load_tasks(path):
    """Read and validate a task file (format in the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        An HDF5 task file.

    Returns
    -------
    TaskSet
        With float32 arrays, and the default split when the file has none.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not HDF5 or breaks the format; the message names the
        file and the problem.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"task file {path} does not exist")
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
            return TaskSet(h5["f"][()], h5["u"][()], params, split, dict(h5.attrs))
    except ValueError as err:
        raise ValueError(f"bad task file {path}: {err}") from err
