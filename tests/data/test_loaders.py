"""In-context loaders, data processor and metric, on synthetic linear systems."""

import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
from neuralop import Trainer
from neuralop.models import FNO

from torch.utils.data import DataLoader, DistributedSampler

from nips_plugin.data.loaders import (EpochSampler, InContextDataProcessor, QueryRelL2Loss, SystemSampler,
                                      load_incontext)
from nips_plugin.data.tasks import TaskSet, load_tasks, save_tasks
from nips_plugin.layers.context import unpack_context, unpack_responses

SPLIT = ["train"] * 8 + ["test"] * 2 + ["ood"] * 2


def make_tasks(grid=(16,), c_f=1, c_u=1, P=12, test_scale=1.0, seed=0):
    """12 systems ``u_j = a_s (j + 1) cumsum(sum_k f_k) / n`` (a linear operator of f).

    The hidden field is ``a_s`` on the grid; test/ood systems are multiplied
    by ``test_scale``.
    """
    rng = np.random.default_rng(seed)
    S, ones = len(SPLIT), [1] * len(grid)
    a = rng.uniform(0.5, 2.0, S)
    scale = np.where(np.array(SPLIT) == "train", 1.0, test_scale).reshape(S, 1, 1, *ones)
    f = scale * rng.standard_normal((S, P, c_f, *grid))
    base = np.cumsum(f.sum(axis=2, keepdims=True), axis=-1) / grid[-1]
    u = a.reshape(S, 1, 1, *ones) * base * np.arange(1, c_u + 1).reshape(c_u, *ones)
    params = {"a": a.reshape(S, *ones) * np.ones((S, *grid))}
    return TaskSet(f, u, params, SPLIT, {"pde": "linear"})


def _lookup(tasks):
    """Map the bytes of every input function to its (system, pair)."""
    return {tasks.f[s, p].tobytes(): (s, p)
            for s in range(tasks.n_systems) for p in range(tasks.n_pairs)}


def _identify(batch, tasks, d):
    """(system, [pair indices]) of every sample, checking x and y against the task set."""
    lookup = _lookup(tasks)
    f_ctx, u_ctx, f_qry = unpack_context(batch["x"], d, tasks.in_components, tasks.out_components)
    y = unpack_responses(batch["y"], tasks.out_components)
    found = []
    for b in range(len(batch["x"])):
        ids = [lookup[fn.numpy().tobytes()] for fn in torch.cat([f_ctx[b], f_qry[b]])]
        systems = {s for s, _ in ids}
        assert systems == {int(batch["system"][b])}
        s, pairs = ids[0][0], [p for _, p in ids]
        np.testing.assert_array_equal(u_ctx[b].numpy(), tasks.u[s, pairs[:d]])
        np.testing.assert_array_equal(y[b].numpy(), tasks.u[s, pairs[d:] or pairs[:d]])
        np.testing.assert_array_equal(batch["hidden"][b, 0].numpy(), tasks.params["a"][s])
        found.append((s, pairs))
    return found


@pytest.mark.parametrize("grid, c_f, c_u, q", [
    ((16,), 1, 1, 0), ((16,), 1, 1, 3), ((8, 6), 2, 2, 2), ((8, 6), 1, 2, 0)])
def test_batch_shapes_and_contents(grid, c_f, c_u, q):
    tasks, d = make_tasks(grid, c_f, c_u), 4
    train, tests, proc = load_incontext(tasks, d, q, batch_size=5, n_test_samples_per_system=3)
    batch = next(iter(train))
    assert batch["x"].shape == (5, d * c_f + d * c_u + q * c_f, *grid)
    assert batch["y"].shape == (5, (q or d) * c_u, *grid)
    assert batch["hidden"].shape == (5, 1, *grid)
    assert batch["system"].dtype == torch.int64
    assert (proc.in_channels, proc.out_channels) == (batch["x"].shape[1], batch["y"].shape[1])
    assert len(train.dataset) == 8 * (12 // (d + q))
    assert set(tests) == {"id", "ood"} and len(tests["id"].dataset) == 2 * 3
    _identify(batch, tasks, d)


def test_no_params_no_hidden_key_and_path_input(tmp_path):
    tasks = make_tasks()
    path = save_tasks(tmp_path / "t.h5", tasks.f, tasks.u)  # default split: 1 test system
    train, tests, _ = load_incontext(path, 2, 1, batch_size=3)
    assert set(next(iter(train))) == {"x", "y", "system"} and set(tests) == {"id"}


def test_splits_disjoint_and_pairs_distinct():
    tasks, d = make_tasks(), 3
    train, tests, _ = load_incontext(tasks, d, 2, batch_size=7, n_train_samples_per_epoch=64)
    for _ in range(2):  # two epochs
        for batch in train:
            for s, pairs in _identify(batch, tasks, d):
                assert SPLIT[s] == "train" and len(set(pairs)) == d + 2
    for name, split in (("id", "test"), ("ood", "ood")):
        for batch in tests[name]:
            for s, pairs in _identify(batch, tasks, d):
                assert SPLIT[s] == split and len(set(pairs)) == d + 2


def _epochs(loader, n):
    return [[b["x"] for b in loader] for _ in range(n)]


def test_determinism_and_fresh_draws_every_epoch():
    tasks = make_tasks()
    kw = dict(n_pairs=3, n_queries=2, batch_size=4, n_test_samples_per_system=2)
    (train1, tests1, _), (train2, tests2, _) = (load_incontext(tasks, **kw) for _ in range(2))
    for name in tests1:  # fixed test samples, identical across calls
        for b1, b2 in zip(tests1[name], tests2[name]):
            assert all(torch.equal(b1[k], b2[k]) for k in b1)
        b1, b1_again = next(iter(tests1[name])), next(iter(tests1[name]))
        assert torch.equal(b1["x"], b1_again["x"])
    e1, e2 = _epochs(train1, 2), _epochs(train2, 2)
    assert all(torch.equal(a, b) for ep1, ep2 in zip(e1, e2) for a, b in zip(ep1, ep2))
    assert not torch.equal(torch.cat(e1[0]), torch.cat(e1[1]))
    other, _, _ = load_incontext(tasks, seed=1, **kw)
    assert not torch.equal(torch.cat(_epochs(other, 1)[0]), torch.cat(e1[0]))
    # keyed draws: workers and set_epoch reproduce the same batches
    workers, _, _ = load_incontext(tasks, num_workers=2, **kw)
    workers.sampler.set_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(_epochs(workers, 1)[0], e1[1]))


def test_a_pool_cycles_through_the_same_distinct_draws():
    tasks = make_tasks()
    train, _, _ = load_incontext(tasks, n_pairs=3, n_queries=2, batch_size=4, n_train_samples_per_epoch=6)
    train.dataset.pool = 4
    keys = [(epoch, i) for epoch in range(3) for i in range(6)]
    samples = [train.dataset[k]["x"] for k in keys]
    distinct = {tuple(x.flatten().tolist()) for x in samples}
    assert len(distinct) == 4
    assert torch.equal(samples[4], samples[0]) and torch.equal(samples[6 + 1], samples[3])  # 4 -> 0, 7 -> 3
    train.dataset.pool = None
    assert len({tuple(train.dataset[k]["x"].flatten().tolist()) for k in keys}) == 18


def test_normalisation_scale_only_on_training_systems():
    tasks, d, q = make_tasks(c_f=2, c_u=2), 2, 1
    train, tests, proc = load_incontext(tasks, d, q, batch_size=8, n_train_samples_per_epoch=800)
    proc.train()
    x = torch.cat([proc.preprocess(b)["x"] for b in train])
    f_ctx, u_ctx, f_qry = unpack_context(x, d, 2, 2)
    for fields in (f_ctx, u_ctx, f_qry):
        rms = fields.pow(2).mean(dim=(0, 1, 3)).sqrt()
        torch.testing.assert_close(rms, torch.ones(2), rtol=0.05, atol=0)
    # fitted on training systems only: scaling the others 100x changes nothing
    _, _, proc_big = load_incontext(make_tasks(c_f=2, c_u=2, test_scale=100.0), d, q)
    for name in ("sigma_f", "sigma_u", "hidden_mean", "hidden_std"):
        assert torch.equal(getattr(proc, name), getattr(proc_big, name))
    # no centring: zero input stays zero
    assert torch.equal(proc.preprocess({"x": torch.zeros(1, 10, 16), "y": torch.zeros(1, 2, 16)})["x"],
                       torch.zeros(1, 10, 16))


def test_processor_train_eval_semantics():
    train, tests, proc = load_incontext(make_tasks(c_u=2), 3, 2, batch_size=4)
    raw = next(iter(tests["id"]))
    proc.train()
    normed = proc.preprocess(dict(raw))
    torch.testing.assert_close(normed["y"] * proc.sigma_u.repeat(2)[:, None], raw["y"])
    proc.eval()
    evaluated = proc.preprocess(dict(raw))
    assert torch.equal(evaluated["y"], raw["y"]) and torch.equal(evaluated["x"], normed["x"])
    out, _ = proc.postprocess(normed["y"], evaluated)  # a perfect normalised prediction
    torch.testing.assert_close(out, raw["y"], rtol=1e-6, atol=0)
    proc.train()
    assert proc.postprocess(normed["y"], normed)[0] is normed["y"]
    assert torch.equal(normed["hidden"], raw["hidden"])  # hidden fields stay physical
    with pytest.raises(ValueError, match="expected 11 channels"):
        proc.preprocess({"x": torch.zeros(1, 3, 16), "y": raw["y"]})


def test_oracle_mode_same_queries_standardised_hidden():
    tasks, d, q = make_tasks(), 3, 2
    _, tests_ic, _ = load_incontext(tasks, d, q)
    train, tests, proc = load_incontext(tasks, d, q, mode="oracle", n_train_samples_per_epoch=80)
    ic, orc = next(iter(tests_ic["id"])), next(iter(tests["id"]))
    assert orc["x"].shape[1] == proc.in_channels == 1 + q
    assert torch.equal(orc["y"], ic["y"]) and torch.equal(orc["x"][:, 1:], ic["x"][:, -q:])
    assert torch.equal(orc["x"][:, 0], orc["hidden"][:, 0])
    proc.train()
    hidden = torch.cat([proc.preprocess(b)["x"][:, 0] for b in train])
    assert abs(hidden.mean()) < 1e-5 and abs(hidden.std(unbiased=False) - 1) < 1e-5
    with pytest.raises(ValueError, match="oracle mode needs"):
        load_incontext(tasks, d, 0, mode="oracle")
    with pytest.raises(ValueError, match="oracle mode needs"):
        load_incontext(TaskSet(tasks.f, tasks.u, split=SPLIT), d, q, mode="oracle")


def test_argument_errors():
    tasks = make_tasks()
    with pytest.raises(ValueError, match="exceeds the 12 pairs"):
        load_incontext(tasks, 10, 3)
    with pytest.raises(ValueError, match="n_pairs >= 1"):
        load_incontext(tasks, 0, 1)
    with pytest.raises(ValueError, match="mode must be"):
        load_incontext(tasks, 2, 1, mode="fno")
    with pytest.raises(ValueError, match="no training systems"):
        load_incontext(TaskSet(tasks.f, tasks.u, split=["test"] * 12), 2, 1)


def test_processor_save_load(tmp_path):
    _, tests, proc = load_incontext(make_tasks(c_f=2), 2, 1, mode="oracle")
    batch = next(iter(tests["ood"]))
    proc.save(tmp_path / "proc.pt")
    torch.save(proc, tmp_path / "whole.pt")
    for loaded in (InContextDataProcessor.load(tmp_path / "proc.pt"),
                   torch.load(tmp_path / "whole.pt", weights_only=False)):
        assert loaded.config == proc.config == dict(
            n_pairs=2, n_queries=1, in_components=2, out_components=1, mode="oracle", n_hidden=1)
        for name, buf in proc.named_buffers():
            assert torch.equal(buf, getattr(loaded, name))
        assert torch.equal(loaded.preprocess(dict(batch))["x"], proc.preprocess(dict(batch))["x"])


def test_query_rel_l2_against_hand_computation():
    y = torch.tensor([[[3.0, 4.0], [0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]])  # B=1, 2 functions x c_u=2
    y_pred = y.clone()
    y_pred[0, 0] = torch.tensor([3.0, 5.0])  # function 0 error 1, norm sqrt(26)
    y_pred[0, 3] = torch.tensor([2.0, 0.0])  # function 1 error 2, norm 3
    y, y_pred = torch.cat([y, 2 * y]), torch.cat([y_pred, 2 * y_pred])
    loss = QueryRelL2Loss(out_components=2)
    expected = torch.tensor([[1 / 26 ** 0.5, 2 / 3]] * 2)
    torch.testing.assert_close(loss.per_function(y_pred, y), expected)
    torch.testing.assert_close(loss(y_pred, y, x=None, hidden=None), expected.mean(1).sum())
    torch.testing.assert_close(QueryRelL2Loss(2, reduction="mean")(y_pred, y), expected.mean())
    with pytest.raises(ValueError, match="differ in shape"):
        loss(y_pred[:, :2], y)


@pytest.mark.filterwarnings("ignore:FNO.forward\\(\\) received unexpected keyword")
def test_trainer_smoke_with_fno():
    torch.manual_seed(0)
    tasks = make_tasks()
    train, tests, proc = load_incontext(tasks, 3, 2, batch_size=8, n_test_samples_per_system=2)
    model = FNO(n_modes=(8,), in_channels=proc.in_channels, out_channels=proc.out_channels,
                hidden_channels=8, n_layers=2)
    loss = QueryRelL2Loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    trainer = Trainer(model=model, n_epochs=1, device="cpu", data_processor=proc, verbose=False)
    metrics = trainer.train(train, tests, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 10),
                            training_loss=loss, eval_losses={"rel_l2": loss})
    assert {"id_rel_l2", "ood_rel_l2", "train_err", "avg_loss"} <= set(metrics)
    # the reported value is the mean relative error over all query functions
    proc.eval()
    model.eval()
    with torch.no_grad():
        errors = []
        for b in tests["id"]:
            b = proc.preprocess(dict(b))
            errors.append(loss.per_function(proc.postprocess(model(**b), b)[0], b["y"]))
    torch.testing.assert_close(torch.as_tensor(metrics["id_rel_l2"]), torch.cat(errors).mean())


def test_distributed_flag(tmp_path):
    tasks = make_tasks()
    with pytest.warns(UserWarning, match="no process group"):
        train, _, _ = load_incontext(tasks, 2, 1, distributed=True)
    assert train.sampler.sampler.num_replicas == 1
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            train, tests, _ = load_incontext(tasks, 2, 1, distributed=True)
        assert train.sampler.sampler.num_replicas == dist.get_world_size()
        assert tests["id"].sampler.__class__.__name__ == "SequentialSampler"
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------- out-of-core task files

def _lazy_copy(tasks, path):
    """``tasks`` written to ``path`` and opened lazily."""
    save_tasks(path, tasks.f, tasks.u, tasks.params, tasks.split, **tasks.attrs)
    lazy = load_tasks(path, lazy=True)
    assert lazy.lazy
    return lazy


@pytest.mark.parametrize("mode, q", [("incontext", 2), ("incontext", 0), ("oracle", 2)])
def test_lazy_samples_equal_eager_samples(tmp_path, mode, q):
    tasks = make_tasks(grid=(8, 6), c_f=2, c_u=1)
    lazy = _lazy_copy(tasks, tmp_path / "t.h5")
    kw = dict(n_pairs=3, n_queries=q, batch_size=5, n_test_samples_per_system=3, seed=4, mode=mode)
    eager_loaders, lazy_loaders = load_incontext(tasks, **kw), load_incontext(lazy, **kw)
    for name in ("sigma_f", "sigma_u", "hidden_mean", "hidden_std"):
        assert torch.equal(getattr(eager_loaders[2], name), getattr(lazy_loaders[2], name))
    # two epochs, and the lazy one through forked workers that open the file themselves
    lazy_workers = load_incontext(lazy, num_workers=2, **kw)[0]
    for epoch in range(2):
        batches = [list(loader) for loader in (eager_loaders[0], lazy_loaders[0], lazy_workers)]
        assert len(batches[0]) == len(batches[1]) == len(batches[2]) > 1
        for b_eager, b_lazy, b_workers in zip(*batches):
            assert all(torch.equal(b_eager[k], b_lazy[k]) and torch.equal(b_eager[k], b_workers[k])
                       for k in b_eager), epoch
    for name in ("id", "ood"):
        pairs = list(zip(eager_loaders[1][name], lazy_loaders[1][name]))
        assert len(pairs) == 2
        assert all(torch.equal(a[k], b[k]) for a, b in pairs for k in a)


def test_streaming_statistics_equal_in_memory_ones(tmp_path):
    tasks = make_tasks(grid=(8, 6), c_f=2, c_u=3, test_scale=30.0)
    lazy = _lazy_copy(tasks, tmp_path / "t.h5")
    proc = InContextDataProcessor(2, 1, 2, 3, n_hidden=1).fit(lazy, lazy.indices("train"))
    f = np.asarray(tasks.f[:8], np.float64)  # the 8 training systems, in memory
    u = np.asarray(tasks.u[:8], np.float64)
    np.testing.assert_allclose(proc.sigma_f.numpy(), np.sqrt(np.mean(f ** 2, axis=(0, 1, 3, 4))), rtol=1e-6)
    np.testing.assert_allclose(proc.sigma_u.numpy(), np.sqrt(np.mean(u ** 2, axis=(0, 1, 3, 4))), rtol=1e-6)
    a = tasks.params["a"][:8].astype(np.float64)
    np.testing.assert_allclose(proc.hidden_mean.numpy(), [a.mean()], rtol=1e-6)
    np.testing.assert_allclose(proc.hidden_std.numpy(), [a.std()], rtol=1e-6)


def test_ranks_draw_disjoint_systems():
    tasks = make_tasks()  # 8 training systems
    train, _, _ = load_incontext(tasks, 3, 2, batch_size=4, n_train_samples_per_epoch=50)
    dataset = train.dataset
    system_of = lambda i: int(dataset.systems[i % len(dataset.systems)])  # noqa: E731
    # one replica: DistributedSampler's order, so single-process draws did not change
    for epoch in range(2):
        ours, theirs = SystemSampler(dataset, 1, 0, seed=3), DistributedSampler(dataset, 1, 0, seed=3)
        ours.set_epoch(epoch), theirs.set_epoch(epoch)
        assert list(ours) == list(theirs)
    for world in (2, 3):
        seen = []
        for rank in range(world):
            sampler = SystemSampler(dataset, num_replicas=world, rank=rank, seed=3)
            sampler.set_epoch(1)
            indices = list(sampler)
            assert len(indices) == len(sampler) == -(-50 // world)  # the ranks stay in step
            seen.append({system_of(i) for i in indices})
            # the batches a rank's loader yields hold only its systems
            loader = DataLoader(dataset, batch_size=4, sampler=EpochSampler(sampler))
            assert {int(s) for b in loader for s in b["system"]} == seen[-1]
        assert set().union(*seen) == set(range(8))
        assert sum(len(s) for s in seen) == 8  # disjoint
        assert max(map(len, seen)) - min(map(len, seen)) <= 1
    with pytest.raises(ValueError, match="a system per rank"):
        SystemSampler(dataset, num_replicas=9, rank=0)
