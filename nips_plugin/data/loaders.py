"""neuraloperator-style loaders, data processor and metric for in-context tasks.

:func:`load_incontext` turns a :class:`~nips_plugin.data.tasks.TaskSet` into
``(train_loader, test_loaders, data_processor)`` as neuraloperator's own
loaders do, ready for ``neuralop.Trainer``.

A sample is one system ``s`` and ``d + q`` distinct pairs of it drawn at random,
``d`` context pairs and ``q`` queries, packed by
:func:`~nips_plugin.layers.context.pack_context`::

    x = [f_ctx (d*c_f) | u_ctx (d*c_u) | f_qry (q*c_f)]     [d*c_f + d*c_u + q*c_f, *grid]
    y = u_qry (q*c_u), or u_ctx (d*c_u) when q = 0          (reconstruction objective)

Batches are dicts with ``x``, ``y``, ``system`` (``[B]`` int64, index of the
system in the TaskSet) and, when the systems have hidden fields, ``hidden``
(``[B, n_hidden, *grid]``, fields in ``sorted(params)`` order, physical
units). The Trainer calls ``model(**batch)``: models take ``**kwargs`` and must
ignore ``y``, ``hidden`` and ``system``.

Draws are keyed, not stateful: training sample ``i`` of epoch ``e`` uses the
random stream ``(seed, 0, e, i)``, test sample ``k`` of system ``s`` the stream
``(seed, 1, s, k)``. Training draws therefore change every epoch yet are
reproducible and independent of ``num_workers``; test samples are fixed.
"""

import json
import math
import warnings

import numpy as np
import torch
import torch.distributed as dist
from neuralop.data.transforms.data_processors import DataProcessor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..layers.context import ContextLayout, pack_context, pack_responses
from .tasks import TaskSet, load_tasks

MODES = ("incontext", "oracle")
_TRAIN_STREAM, _TEST_STREAM = 0, 1


def _rng(seed, stream, a, b):
    """Independent numpy generator for the key ``(seed, stream, a, b)``."""
    return np.random.default_rng([seed, stream, a, b])


class InContextDataset(Dataset):
    """Random in-context samples of a set of systems.

    Parameters
    ----------
    tasks : TaskSet
        All systems; ``system`` indices refer to it.
    systems : sequence of int
        Systems this dataset draws from; sample ``i`` uses
        ``systems[i % len(systems)]`` so every system is seen equally often.
    n_pairs : int
        Context pairs ``d >= 1``.
    n_queries : int
        Queries ``q >= 0``.
    mode : {"incontext", "oracle"}
        ``"oracle"``: ``x = [hidden fields (n_hidden) | f_qry (q*c_f)]``, the
        "FNO given the hidden field" reference, with the same draws.
    seed : int
        Non-negative seed of the draws.
    length : int
        Samples per epoch.

    pool : int, optional
        Draw only this many distinct samples over the whole run, epoch after epoch
        (for models whose cost per new context is high: the output-error local
        operator, cached per context); None: new draws every epoch.

    Notes
    -----
    ``dataset[(epoch, i)]`` is sample ``i`` of epoch ``epoch`` (the keys
    :class:`EpochSampler` yields); ``dataset[i]`` is sample ``i`` of epoch 0.
    With a ``pool``, it is distinct sample ``(epoch * length + i) mod pool``.
    """

    def __init__(self, tasks, systems, n_pairs, n_queries, mode, seed, length, pool=None):
        self.tasks = tasks
        self.systems = np.asarray(systems, dtype=np.int64)
        self.n_pairs, self.n_queries = n_pairs, n_queries
        self.mode, self.seed, self.length, self.pool = mode, seed, length, pool

    def __len__(self):
        return self.length

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        if self.pool:
            epoch, index = 0, (epoch * self.length + index) % self.pool
        system = int(self.systems[index % len(self.systems)])
        return self.sample(system, _rng(self.seed, _TRAIN_STREAM, epoch, index))

    def sample(self, system, rng):
        """Draw one packed sample of ``system``.

        Parameters
        ----------
        system : int
            Index of the system in the TaskSet.
        rng : np.random.Generator
            Source of the ``d + q`` distinct pair indices (first ``d``:
            context, last ``q``: queries).

        Returns
        -------
        dict
            ``x``, ``y``, ``system`` (0-d int64) and ``hidden`` if any.
        """
        d, q = self.n_pairs, self.n_queries
        pairs = rng.choice(self.tasks.n_pairs, size=d + q, replace=False)
        # copies only the drawn pairs, from memory or (lazy TaskSet) from the file
        f = torch.from_numpy(self.tasks.f[system, pairs])[None]
        u = torch.from_numpy(self.tasks.u[system, pairs])[None]
        # stacked per sample: a copy of all systems' fields would grow with the file
        hidden = (torch.from_numpy(np.stack([self.tasks.params[k][system] for k in self.tasks.param_names]))
                  if self.tasks.params else None)
        if self.mode == "oracle":
            # pack_responses flattens [1, q, c, *grid] functions pair-major, as for x
            x = torch.cat([hidden, pack_responses(f[:, d:])[0]])
        else:
            x = pack_context(f[:, :d], u[:, :d], f[:, d:] if q else None)[0]
        sample = {"x": x, "y": pack_responses(u[:, d:] if q else u[:, :d])[0],
                  "system": torch.tensor(system)}
        if hidden is not None:
            sample["hidden"] = hidden
        return sample


class FixedSamples(Dataset):
    """The fixed test samples of some systems, drawn when indexed (never all held in memory).

    Sample ``k`` is draw ``k % n`` of system ``systems[k // n]``, from the
    stream ``(seed, 1, system, k % n)``.

    Parameters
    ----------
    source : InContextDataset
        Draws the samples (:meth:`InContextDataset.sample`).
    systems : sequence of int
    n_per_system : int
        Draws per system ``n``.
    """

    def __init__(self, source, systems, n_per_system):
        self.source, self.systems, self.n = source, np.asarray(systems, dtype=np.int64), n_per_system

    def __len__(self):
        return len(self.systems) * self.n

    def __getitem__(self, k):
        system, draw = int(self.systems[k // self.n]), k % self.n
        return self.source.sample(system, _rng(self.source.seed, _TEST_STREAM, system, draw))


class SystemSampler(DistributedSampler):
    """A ``DistributedSampler`` whose ranks draw disjoint sets of systems.

    Sample ``i`` of an :class:`InContextDataset` uses system position
    ``j = i % n`` (``n = len(dataset.systems)``); rank ``r`` of ``R`` owns
    the contiguous block of positions ``j`` with ``floor(j R / n) = r`` and
    yields only the samples of its systems, so that a lazily loaded task
    file is read by each rank for its own systems only. Each epoch the
    samples are shuffled as ``DistributedSampler`` shuffles them (permutation
    seeded by ``seed + epoch``) and every rank yields
    ``ceil(len(dataset) / R)`` of its own (cycling through them, or leaving
    some out, to keep the ranks in step). With one replica this is exactly
    ``DistributedSampler``'s order.

    Parameters
    ----------
    dataset : InContextDataset
    num_replicas, rank : int, optional
        Default: from the initialised process group.
    seed : int

    Attributes
    ----------
    owner : np.ndarray
        ``[n]`` the rank owning each system position.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, seed=0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        n = len(dataset.systems)
        if n < self.num_replicas or (self.num_replicas > 1 and len(dataset) < n):
            raise ValueError(f"cannot share {n} training systems and {len(dataset)} samples among "
                             f"{self.num_replicas} ranks: need a system per rank and a sample per system")
        self.owner = np.arange(n) * self.num_replicas // n

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=g).numpy()
        own = order[self.owner[order % len(self.owner)] == self.rank]
        return iter(np.resize(own, self.num_samples).tolist())


class EpochSampler(Sampler):
    """Tag the indices of a :class:`DistributedSampler` with the epoch.

    Each pass yields ``(epoch, index)`` keys for :class:`InContextDataset` and
    then advances the epoch, so that draws change from epoch to epoch without
    the Trainer calling ``set_epoch`` (neuralop's Trainer never does). The
    keys are computed in the main process, so worker processes need no state.

    Parameters
    ----------
    sampler : DistributedSampler
        Shuffles (by ``seed + epoch``) and, under ``torch.distributed``,
        shards the indices (:class:`SystemSampler`: by system).
    """

    def __init__(self, sampler):
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch):
        """Make the next pass epoch ``epoch`` (e.g. when resuming a run)."""
        self.epoch = epoch

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        self.sampler.set_epoch(epoch)
        return ((epoch, index) for index in self.sampler)

    def __len__(self):
        return len(self.sampler)


def _component_rms(tasks, systems):
    """RMS of each component (axis 2) of ``f[systems]`` and ``u[systems]`` over pairs and grid.

    One streaming pass, one system in memory at a time (a lazy TaskSet reads
    each system once); sums in float64.
    """
    sumsq = [np.zeros(tasks.in_components), np.zeros(tasks.out_components)]
    for s in systems:
        for total, a in zip(sumsq, (tasks.f[s], tasks.u[s])):
            total += np.square(a, dtype=np.float64).sum(axis=(0, *range(2, a.ndim)))
    n = len(systems) * tasks.n_pairs * math.prod(tasks.grid_shape)
    return [np.sqrt(total / n) for total in sumsq]


def _nonzero(scale):
    # an identically zero channel carries no information; leave it unscaled
    return np.where(scale > 0, scale, 1.0)


class InContextDataProcessor(DataProcessor):
    r"""Scale-only normalisation of packed in-context batches.

    Input-function channels are divided by :math:`\sigma_f`, response
    channels (in ``x`` and ``y``) by :math:`\sigma_u`, with one RMS per
    component shared by all pairs and grid points,

    .. math::
        \sigma_{f,k} = \Big(\frac{1}{S_{tr} P N}\sum_{s \in tr}\sum_{p}\sum_{x}
        f_{s,p,k}(x)^2\Big)^{1/2},

    fitted on the training systems only. There is no centring: the in-context
    operators are linear in the query input (:math:`u \approx \Delta K f`), and
    subtracting a mean would turn that into an affine map the models cannot
    represent. In ``"oracle"`` mode the hidden-field channels of ``x`` are
    standardised instead (mean and std per field).

    As neuralop's ``DefaultDataProcessor``: :meth:`preprocess` moves the batch
    to :attr:`device` and normalises ``x`` always and ``y`` in training mode
    only; :meth:`postprocess` de-normalises the output in eval mode, so the
    training loss is in normalised units and evaluation metrics in physical
    units.

    Parameters
    ----------
    n_pairs, n_queries, in_components, out_components : int
        ``d``, ``q``, ``c_f`` and ``c_u`` of the packed layout.
    mode : {"incontext", "oracle"}
        Layout of ``x`` (see :class:`InContextDataset`).
    n_hidden : int
        Number of hidden fields (oracle ``x`` channels).

    Attributes
    ----------
    sigma_f, sigma_u : torch.Tensor
        Buffers ``[c_f]`` and ``[c_u]`` (ones until :meth:`fit`).
    hidden_mean, hidden_std : torch.Tensor
        Buffers ``[n_hidden]``.
    layout : ContextLayout
        The in-context layout (``d``, ``c_f``, ``c_u``, ``q``).
    device : str or torch.device
        Where batches are moved.
    """

    def __init__(self, n_pairs, n_queries=0, in_components=1, out_components=1,
                 mode="incontext", n_hidden=0):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.layout = ContextLayout(n_pairs, in_components, out_components, n_queries)
        self.mode, self.n_hidden = mode, n_hidden
        self.register_buffer("sigma_f", torch.ones(in_components))
        self.register_buffer("sigma_u", torch.ones(out_components))
        self.register_buffer("hidden_mean", torch.zeros(n_hidden))
        self.register_buffer("hidden_std", torch.ones(n_hidden))
        self.device = "cpu"
        self.model = None

    @property
    def config(self):
        """The plain constructor arguments (JSON-serialisable)."""
        lay = self.layout
        return dict(n_pairs=lay.n_pairs, n_queries=lay.n_queries, in_components=lay.in_components,
                    out_components=lay.out_components, mode=self.mode, n_hidden=self.n_hidden)

    @property
    def in_channels(self):
        """Channels of ``x``: the model's ``in_channels``."""
        if self.mode == "oracle":
            return self.n_hidden + self.layout.n_queries * self.layout.in_components
        return self.layout.in_channels

    @property
    def out_channels(self):
        """Channels of ``y``: the model's ``out_channels``."""
        return self.layout.out_channels

    def fit(self, tasks, systems):
        """Fit the statistics on the given (training) systems.

        Parameters
        ----------
        tasks : TaskSet
        systems : sequence of int
            Indices of the training systems.

        Returns
        -------
        InContextDataProcessor
            ``self``.
        """
        if len(systems) == 0:
            raise ValueError("cannot fit normalisation statistics on zero systems")
        # copy_ casts the float64 statistics to the buffers' dtype and device
        sigma_f, sigma_u = _component_rms(tasks, systems)
        self.sigma_f.copy_(torch.as_tensor(_nonzero(sigma_f)))
        self.sigma_u.copy_(torch.as_tensor(_nonzero(sigma_u)))
        if self.n_hidden:
            fields = np.stack([tasks.params[k][systems] for k in tasks.param_names]).astype(np.float64)
            axes = tuple(range(1, fields.ndim))
            self.hidden_mean.copy_(torch.as_tensor(fields.mean(axis=axes)))
            self.hidden_std.copy_(torch.as_tensor(_nonzero(fields.std(axis=axes))))
        return self

    def _x_shift_scale(self):
        """Per-channel shift and scale of ``x``, each ``[in_channels]``."""
        d, q = self.layout.n_pairs, self.layout.n_queries
        if self.mode == "oracle":
            scale = torch.cat([self.hidden_std, self.sigma_f.repeat(q)])
            shift = torch.cat([self.hidden_mean, torch.zeros_like(scale[self.n_hidden:])])
        else:
            scale = torch.cat([self.sigma_f.repeat(d), self.sigma_u.repeat(d), self.sigma_f.repeat(q)])
            shift = torch.zeros_like(scale)
        return shift, scale

    def _y_scale(self):
        """Per-channel scale of ``y`` and of the model output, ``[out_channels]``."""
        return self.sigma_u.repeat(self.out_channels // self.layout.out_components)

    @staticmethod
    def _per_channel(vec, t, channel_dim):
        """View ``vec [C]`` to broadcast along ``channel_dim`` of ``t``."""
        if t.shape[channel_dim] != vec.numel():
            raise ValueError(
                f"expected {vec.numel()} channels along dim {channel_dim}, got shape {tuple(t.shape)}"
            )
        return vec.view(-1, *[1] * (t.ndim - channel_dim - 1))

    def to(self, device):
        super().to(device)
        self.device = device
        return self

    def preprocess(self, data_dict, batched=True):
        """Move a batch to :attr:`device`; normalise ``x``, and ``y`` when training.

        Parameters
        ----------
        data_dict : dict
            ``x`` ``[B, in_channels, *grid]``, ``y`` ``[B, out_channels, *grid]``
            and any other tensors (``hidden``, ``system``: moved, untouched).
        batched : bool
            Whether tensors have a leading batch dimension.

        Returns
        -------
        dict
            ``data_dict``, updated in place.
        """
        channel_dim = 1 if batched else 0
        for key, value in data_dict.items():
            if torch.is_tensor(value):
                data_dict[key] = value.to(self.device)
        x, y = data_dict["x"], data_dict["y"]
        shift, scale = self._x_shift_scale()
        data_dict["x"] = (x - self._per_channel(shift, x, channel_dim)) / self._per_channel(scale, x, channel_dim)
        if self.training:
            data_dict["y"] = y / self._per_channel(self._y_scale(), y, channel_dim)
        return data_dict

    def postprocess(self, output, data_dict):
        """De-normalise the output in eval mode (``y`` was never normalised there).

        Parameters
        ----------
        output : torch.Tensor
            ``[B, out_channels, *grid]`` model output.
        data_dict : dict
            The preprocessed batch, returned unchanged.

        Returns
        -------
        output, data_dict
        """
        if not self.training:
            output = output * self._per_channel(self._y_scale(), output, 1)
        return output, data_dict

    def forward(self, **data_dict):
        """Preprocess, run the wrapped model (see ``wrap``), postprocess."""
        data_dict = self.preprocess(data_dict)
        return self.postprocess(self.model(**data_dict), data_dict)

    def save(self, path):
        """Save the statistics and configuration (loadable with ``weights_only=True``)."""
        state = {k: v.detach().cpu() for k, v in self.named_buffers(recurse=False)}
        torch.save({"config": json.dumps(self.config), "state_dict": state}, path)

    @classmethod
    def load(cls, path, map_location="cpu"):
        """Load a processor written by :meth:`save`."""
        blob = torch.load(path, map_location=map_location, weights_only=True)
        processor = cls(**json.loads(blob["config"]))
        processor.load_state_dict(blob["state_dict"])
        return processor


class QueryRelL2Loss:
    r"""Relative L2 error per query function, averaged over functions, summed over the batch.

    For sample ``b`` with ``n`` output functions of ``c_u`` components each,

    .. math::
        e_{b,j} = \frac{\|\hat u_{b,j} - u_{b,j}\|_2}{\|u_{b,j}\|_2 + \epsilon},
        \qquad \mathrm{loss} = \sum_b \frac{1}{n} \sum_j e_{b,j},

    the norms running over all components and grid points of function ``j``.
    neuralop's Trainer divides the sum by the number of samples, so the
    reported value is the mean relative L2 error over all query functions.
    (``LpLoss`` would instead sum per-channel errors over functions and
    components.)

    Parameters
    ----------
    out_components : int
        Components ``c_u`` of a response function.
    reduction : {"sum", "mean"}
        Over the batch; the Trainer expects ``"sum"``.
    eps : float
        Added to the denominator, as in ``LpLoss``.
    """

    def __init__(self, out_components=1, reduction="sum", eps=1e-8):
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        self.out_components, self.reduction, self.eps = out_components, reduction, eps

    @property
    def name(self):
        return "query_rel_l2"

    def per_function(self, y_pred, y):
        """Relative L2 error of each function, ``[B, n_functions]``.

        Parameters
        ----------
        y_pred, y : torch.Tensor
            ``[B, n*c_u, *grid]`` packed responses of identical shapes.
        """
        if y_pred.shape != y.shape:
            raise ValueError(f"y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)} differ in shape")
        if y.shape[1] % self.out_components:
            raise ValueError(
                f"{y.shape[1]} channels is not a multiple of out_components={self.out_components}"
            )
        n = y.shape[1] // self.out_components
        diff = torch.linalg.vector_norm((y_pred - y).reshape(y.shape[0], n, -1), dim=-1)
        return diff / (torch.linalg.vector_norm(y.reshape(y.shape[0], n, -1), dim=-1) + self.eps)

    def __call__(self, y_pred, y, **kwargs):
        per_sample = self.per_function(y_pred, y).mean(dim=1)
        return per_sample.sum() if self.reduction == "sum" else per_sample.mean()


def load_incontext(tasks, n_pairs, n_queries, batch_size=16, test_batch_size=None,
                   n_train_samples_per_epoch=None, n_test_samples_per_system=4, seed=0,
                   mode="incontext", num_workers=0, distributed=False):
    """Loaders and data processor for in-context operator learning.

    Parameters
    ----------
    tasks : TaskSet or str or os.PathLike
        The systems, or a task file (see :mod:`nips_plugin.data.tasks`; read
        lazily when large, see :func:`~nips_plugin.data.tasks.load_tasks`).
        Samples are read from a lazy TaskSet when drawn.
    n_pairs : int
        Context pairs ``d >= 1`` per sample.
    n_queries : int
        Held-out queries ``q >= 0`` per sample (0: ``y`` is the context responses).
    batch_size : int
        Training batch size.
    test_batch_size : int, optional
        Test batch size, default ``batch_size``.
    n_train_samples_per_epoch : int, optional
        Default ``n_train * max(1, P // (d + q))``: on average each pair is
        seen about once per epoch.
    n_test_samples_per_system : int
        Fixed draws per test system.
    seed : int
        Non-negative seed of all draws.
    mode : {"incontext", "oracle"}
        ``"oracle"`` replaces the context by the (standardised) hidden fields;
        needs hidden fields and ``q > 0``. Same draws as ``"incontext"``.
    num_workers : int
        DataLoader workers.
    distributed : bool
        Shard the training systems over the ranks with a
        :class:`SystemSampler` (needs an initialised process group): each
        rank reads only its own systems. Test loaders are not sharded.

    Returns
    -------
    train_loader : DataLoader
        Over ``split == "train"`` systems; new draws every epoch (the
        :class:`EpochSampler` at ``train_loader.sampler`` counts epochs).
    test_loaders : dict of str to DataLoader
        ``"id"`` (``split == "test"``) and ``"ood"`` (``split == "ood"``), each
        present when such systems exist; fixed samples.
    data_processor : InContextDataProcessor
        Fitted on the training systems.
    """
    if not isinstance(tasks, TaskSet):
        tasks = load_tasks(tasks)
    d, q = int(n_pairs), int(n_queries)
    if d < 1 or q < 0:
        raise ValueError(f"need n_pairs >= 1 and n_queries >= 0, got {n_pairs}, {n_queries}")
    if d + q > tasks.n_pairs:
        raise ValueError(f"n_pairs + n_queries = {d + q} exceeds the {tasks.n_pairs} pairs per system")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "oracle" and (not tasks.params or q == 0):
        raise ValueError("oracle mode needs hidden fields (params) and n_queries > 0")
    train_systems = tasks.indices("train")
    if len(train_systems) == 0:
        raise ValueError("the task set has no training systems")

    processor = InContextDataProcessor(d, q, tasks.in_components, tasks.out_components, mode,
                                       len(tasks.params)).fit(tasks, train_systems)

    length = n_train_samples_per_epoch or len(train_systems) * max(1, tasks.n_pairs // (d + q))
    train_set = InContextDataset(tasks, train_systems, d, q, mode, seed, length)
    if distributed and not (dist.is_available() and dist.is_initialized()):
        warnings.warn("distributed=True but no process group is initialised: not sharding")
        distributed = False
    # with one replica a plain shuffle seeded by seed + epoch
    shards = {} if distributed else dict(num_replicas=1, rank=0)
    sampler = EpochSampler(SystemSampler(train_set, seed=seed, **shards))
    pin = torch.cuda.is_available()
    train_loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler,
                              num_workers=num_workers, pin_memory=pin)

    test_loaders = {}
    for name, split in (("id", "test"), ("ood", "ood")):
        systems = tasks.indices(split)
        if len(systems):
            samples = FixedSamples(train_set, systems, n_test_samples_per_system)
            test_loaders[name] = DataLoader(samples, batch_size=test_batch_size or batch_size,
                                            shuffle=False, num_workers=num_workers, pin_memory=pin)
    return train_loader, test_loaders, processor
