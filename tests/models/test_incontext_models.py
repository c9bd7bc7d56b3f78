"""NIPS, NAO and LinearNAO: shapes, gradients, linearity, kernels, errors (modelled on
neuralop's test_fno.py)."""
import numpy as np
import pytest
import torch
from neuralop.utils import count_model_params

from nips_plugin import NAO, NIPS, LinearNAO, pack_context

GRIDS = {1: (11,), 2: (9, 8), 3: (5, 6, 5)}


def build(cls, n_dim, d=4, cf=1, cu=1, q=3, **kwargs):
    dim_kw = {"n_modes": (4,) * n_dim} if cls is NIPS else {"n_dim": n_dim}
    return cls(in_channels=d * (cf + cu) + q * cf, out_channels=(q or d) * cu, n_pairs=d,
               in_components=cf, out_components=cu, n_layers=3, n_heads=2, qk_channels=5,
               **dim_kw, **kwargs)


def sample(n_dim, B=2, d=4, cf=1, cu=1, q=3):
    grid = GRIDS[n_dim]
    f, u = torch.randn(B, d, cf, *grid), torch.randn(B, d, cu, *grid)
    fq = torch.randn(B, q, cf, *grid) if q else None
    return f, u, fq


def check_shapes_gradients_kernel(model, n_dim, cf, cu, q):
    """Output shape, a gradient for every parameter, and u_hat = M f with M = extract_kernel."""
    f, u, fq = sample(n_dim, cf=cf, cu=cu, q=q)
    x = pack_context(f, u, fq)
    out = model(x, y=torch.zeros(1))  # the Trainer passes the whole batch
    assert out.shape == (2, (q or 4) * cu, *GRIDS[n_dim])

    # every parameter receives a gradient (no unused parameters)
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"unused parameter {name}"

    # extract_kernel reproduces the forward pass: u_hat = M f
    with torch.no_grad():
        M = model.extract_kernel(x)
        N = torch.Size(GRIDS[n_dim]).numel()
        assert M.shape == (2, N * cu, N * cf)
        inputs = (fq if q else f).flatten(2)  # [B, m, N c_f]
        via_kernel = torch.einsum("bij,bmj->bmi", M, inputs).reshape(out.shape)
        torch.testing.assert_close(via_kernel, out.detach(), rtol=1e-4, atol=1e-6 * out.abs().max())


@pytest.mark.parametrize("cls", [NIPS, NAO, LinearNAO])
@pytest.mark.parametrize("n_dim", [1, 2, 3])
@pytest.mark.parametrize("cf,cu", [(1, 1), (2, 2), (2, 1)])
@pytest.mark.parametrize("q", [0, 3])
def test_shapes_gradients_kernel(cls, n_dim, cf, cu, q):
    # NIPS's context fit reproduces the context exactly, leaving nothing to learn when q = 0
    options = {"context_fit": "none"} if cls is NIPS and q == 0 else {}
    check_shapes_gradients_kernel(build(cls, n_dim, cf=cf, cu=cu, q=q, **options), n_dim, cf, cu, q)


@pytest.mark.parametrize("cls", [NAO, LinearNAO])
@pytest.mark.parametrize("n_dim", [1, 2, 3])
@pytest.mark.parametrize("cf,cu", [(1, 1), (2, 1)])
@pytest.mark.parametrize("attention_order", ["linear", "quadratic"])
def test_cosine_output_map_shapes_gradients_kernel(cls, n_dim, cf, cu, attention_order):
    model = build(cls, n_dim, cf=cf, cu=cu, output_map="cosine", output_map_modes=3,
                  attention_order=attention_order)
    check_shapes_gradients_kernel(model, n_dim, cf, cu, q=3)


@pytest.mark.parametrize("cls", [NIPS, NAO, LinearNAO])
@pytest.mark.parametrize("context_fit", ["least_squares", "symmetric"])
@pytest.mark.parametrize("n_dim", [1, 2, 3])
@pytest.mark.parametrize("input_norm", ["coordinate", "slab"])
def test_context_fit(cls, context_fit, n_dim, input_norm):
    """The learned kernel acts on what the context does not span: the context is reproduced
    exactly, u = M f still holds with the whole kernel, and every parameter learns from queries
    (the same enhancements for every in-context model)."""
    options = dict(context_fit=context_fit, input_norm=input_norm)
    if cls is not NIPS and input_norm == "coordinate":
        options["input_modes"] = 4
    model = build(cls, n_dim, q=3, **options)
    f, u, fq = sample(n_dim)
    N = torch.Size(GRIDS[n_dim]).numel()
    A = torch.randn(N, N)
    u_sym = (f.flatten(2) @ (A @ A.T / N)).reshape(u.shape)
    if context_fit == "symmetric":
        # the symmetric fit takes the asymmetry of a context's Gram matrix for noise: the
        # responses of random functions would be all noise to it, those of a symmetric system none
        u = u_sym
    out = model(pack_context(f, u, fq))
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"unused parameter {name}"
    with torch.no_grad():
        M = model.extract_kernel(pack_context(f, u, fq))
        via_kernel = torch.einsum("bij,bmj->bmi", M, fq.flatten(2)).reshape(out.shape)
        torch.testing.assert_close(via_kernel, out.detach(), rtol=1e-4, atol=1e-5 * out.abs().max())
        context = build(cls, n_dim, q=0, **options)
        context.load_state_dict(model.state_dict())
        torch.testing.assert_close(context(pack_context(f, u)), u.flatten(1, 2), rtol=1e-4, atol=1e-4)
        if context_fit == "symmetric":
            # on a symmetric system the whole kernel is consistent with symmetry on the span:
            # its transpose maps the context inputs to their responses too
            M = model.extract_kernel(pack_context(f, u_sym, fq))
            torch.testing.assert_close(f.flatten(2) @ M, u_sym.flatten(2), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("cls", [NIPS, NAO, LinearNAO])
def test_linear_in_queries_and_independent_of_other_queries(cls):
    model = build(cls, 2, q=2).eval()
    f, u, _ = sample(2, q=0)
    g1, g2 = torch.randn(2, 2, 1, 9, 8), torch.randn(2, 2, 1, 9, 8)
    with torch.no_grad():
        out = lambda fq: model(pack_context(f, u, fq))
        torch.testing.assert_close(out(2.0 * g1 - 3.0 * g2), 2.0 * out(g1) - 3.0 * out(g2),
                                   rtol=1e-4, atol=1e-5 * out(g1).abs().max())
        # query 0's prediction does not depend on query 1 (the kernel comes from the context only)
        g3 = g1.clone()
        g3[:, 1] = torch.randn(2, 1, 9, 8)
        torch.testing.assert_close(out(g3)[:, 0], out(g1)[:, 0])
        # with q = 0 the model reconstructs the context: same as querying the context inputs
        recon = model(pack_context(f, u))
        torch.testing.assert_close(recon[:, :2], out(f[:, :2]), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("options", [{}, {"output_map_edges": "transposed"}])
def test_nao_and_linear_nao_agree_up_to_output_map_convention(options):
    """Same weights: NAO (quadratic order) equals LinearNAO (linear order) once W^P's
    coordinates and orientation are aligned: an independent check of both contraction orders."""
    nao = build(NAO, 2, **options)
    lin = build(LinearNAO, 2, coord_range=(-1.0, 1.0), output_map_contract="first", **options)
    lin.load_state_dict(nao.state_dict())
    x = pack_context(*sample(2))
    with torch.no_grad():
        torch.testing.assert_close(lin(x), nao(x), rtol=1e-4, atol=1e-7)
        # LinearNAO's own defaults (the authors' coordinates and orientation) give another output
        default = build(LinearNAO, 2, **options)
        default.load_state_dict(nao.state_dict())
        assert not torch.allclose(default(x), nao(x), rtol=1e-2)


def test_nao_conventions_are_the_authors():
    """The defaults, against the MLP evaluated on explicit edges: NAO on [-1, 1] with
    Delta = dx*dy of that grid and W^P contracted over its first index; LinearNAO on
    [0, 1], contracted over its second (see the class docstrings)."""
    grid, values = (9, 8), torch.randn(2, 3, 2 * 72)

    def explicit(mlp, low):
        axes = [torch.linspace(low, 1.0, n) for n in grid]
        pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
        edges = torch.cat([pts[:, None].expand(72, 72, 2), pts[None].expand(72, 72, 2)], -1)
        return mlp.layers(edges)[..., 0]                 # [i, j] = MLP(x_i, x_j)

    nao, lin = build(NAO, 2), build(LinearNAO, 2)
    with torch.no_grad():
        Wf, Wu = explicit(nao.output_map_f, -1.0), explicit(nao.output_map_u, -1.0)
        expected = (2 / 8) * (2 / 7) * (values[..., :72] @ Wf + values[..., 72:] @ Wu)
        torch.testing.assert_close(nao._map_output(values, grid), expected)
        Wf, Wu = explicit(lin.output_map_f, 0.0), explicit(lin.output_map_u, 0.0)
        expected = (1 / 8) * (1 / 7) * (values[..., :72] @ Wf.T + values[..., 72:] @ Wu.T)
        torch.testing.assert_close(lin._map_output(values, grid), expected)


@pytest.mark.parametrize("cls", [NAO, LinearNAO])
@pytest.mark.parametrize("output_map", ["mlp", "cosine"])
def test_attention_orders_are_the_same_function(cls, output_map):
    """The softmax-free attention contracted as (v K^T) Q or through the explicit T x T matrix:
    same outputs and same gradients (float64), for the model's default order and the other."""
    default = build(cls, 2, output_map=output_map).double()
    other = build(cls, 2, output_map=output_map,
                  attention_order="linear" if default.attention == "quadratic" else "quadratic").double()
    assert {default.attention, other.attention} == {"linear", "quadratic"}
    other.load_state_dict(default.state_dict())
    x = pack_context(*sample(2)).double()
    outs = [model(x) for model in (default, other)]
    torch.testing.assert_close(outs[0], outs[1])
    for model, out in zip((default, other), outs):
        out.square().sum().backward()
    for (name, a), b in zip(default.named_parameters(), other.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_cosine_output_map_conventions():
    """The cosine W^P keeps each class's quadrature weight and orientation: NAO sums over the
    kernel's first argument, LinearNAO over its second (the transposed matrix)."""
    grid, values = (9, 8), torch.randn(2, 3, 2 * 72)
    nao, lin = build(NAO, 2, output_map="cosine"), build(LinearNAO, 2, output_map="cosine")
    with torch.no_grad():
        Wf, Wu = nao.output_map_f(grid), nao.output_map_u(grid)
        expected = (2 / 8) * (2 / 7) * (values[..., :72] @ Wf + values[..., 72:] @ Wu)
        torch.testing.assert_close(nao._map_output(values, grid), expected)
        Wf, Wu = lin.output_map_f(grid), lin.output_map_u(grid)
        expected = (1 / 8) * (1 / 7) * (values[..., :72] @ Wf.T + values[..., 72:] @ Wu.T)
        torch.testing.assert_close(lin._map_output(values, grid), expected)


@pytest.mark.parametrize("cls", [NAO, LinearNAO])
def test_cosine_output_map_is_resolution_independent(cls):
    """One set of parameters (independent of the grid) predicts on every grid."""
    model = build(cls, 2, output_map="cosine", output_map_modes=(5, 4))
    n_params = count_model_params(model)
    assert model.output_map_f.coefficients.shape == (1, 20, 1, 20)
    for grid in [(9, 9), (17, 13)]:
        x = pack_context(torch.randn(1, 4, 1, *grid), torch.randn(1, 4, 1, *grid), torch.randn(1, 3, 1, *grid))
        assert model(x).shape == (1, 3, *grid)
    assert count_model_params(model) == n_params


@pytest.mark.parametrize("cls", [NAO, LinearNAO])
def test_released_configuration_options(cls):
    """The NAO folder's options (per-layer slab norm, transposed edges) train and keep u = M f."""
    model = build(cls, 2, layer_norm="token_affine", grid_shape=(9, 8), output_map_edges="transposed")
    assert model.layers[0].norm.weight.shape == (4, 2 * 72)
    f, u, fq = sample(2)
    x = pack_context(f, u, fq)
    out = model(x)
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        via_kernel = torch.einsum("bij,bmj->bmi", model.extract_kernel(x), fq.flatten(2))
        torch.testing.assert_close(via_kernel.reshape(out.shape), out.detach(), rtol=1e-4,
                                   atol=1e-6 * out.abs().max())
    with pytest.raises(ValueError, match="per-token affine"):   # the layers' norm is tied to the grid
        model(pack_context(f[..., :7], u[..., :7], fq[..., :7]))


def test_nips_is_resolution_independent():
    model = build(NIPS, 2)
    n_params = count_model_params(model)
    for grid in [(9, 9), (17, 17), (33, 21)]:
        x = pack_context(torch.randn(1, 4, 1, *grid), torch.randn(1, 4, 1, *grid), torch.randn(1, 3, 1, *grid))
        assert model(x).shape == (1, 3, *grid)
    assert count_model_params(model) == n_params


def test_reference_configuration_parameter_count():
    """The authors' Darcy NIPS (d=50, dk=40, 4 layers, 1 head, 21x21) has 108,692 parameters
    by their count; 176 of them (one row of each weights1, overwritten by weights2) are
    never used, so the equivalent model has 108,516, counted the neuraloperator way."""
    model = NIPS(in_channels=100, out_channels=50, n_pairs=50, n_layers=4, n_heads=1, qk_channels=40,
                 n_modes=(21, 21), input_norm="token_affine", grid_shape=(21, 21))
    assert count_model_params(model) == 108_692 - 4 * 2 * 11 * 2
    assert count_model_params(build(NIPS, 2)) < 2_000


def test_clear_errors():
    model = build(NIPS, 2)
    with pytest.raises(ValueError, match="in-context layout"):
        model(torch.randn(2, 6, 9, 9))
    with pytest.raises(ValueError, match="2-D"):
        model(torch.randn(2, 11, 9))
    with pytest.raises(ValueError, match="out_channels"):
        NIPS(in_channels=11, out_channels=4, n_pairs=4)
    with pytest.raises(ValueError, match="in-context layout"):
        NIPS(in_channels=7, out_channels=4, n_pairs=4)
    with pytest.raises(ValueError, match="grid_shape"):
        NIPS(in_channels=8, out_channels=4, n_pairs=4, input_norm="token_affine")
    with pytest.raises(ValueError, match="input_norm"):
        NAO(in_channels=8, out_channels=4, n_pairs=4, input_norm="batch")
    with pytest.raises(ValueError, match="layer_norm='token_affine' needs grid_shape"):
        NAO(in_channels=8, out_channels=4, n_pairs=4, layer_norm="token_affine")
    for bad in ({"layer_norm": "batch"}, {"coord_range": (1.0, -1.0)}, {"output_map_contract": "both"},
                {"output_map_edges": "diagonal"}, {"output_map": "fourier"}, {"attention_order": "cubic"},
                {"output_map_modes": (4,), "output_map": "cosine"}, {"output_map_modes": (4, 0), "output_map": "cosine"},
                {"output_map_edges": "transposed", "output_map": "cosine"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LinearNAO(in_channels=8, out_channels=4, n_pairs=4, **bad)
    ref = NIPS(in_channels=8, out_channels=4, n_pairs=4, n_modes=(9, 9), input_norm="token_affine",
               grid_shape=(9, 9))
    with pytest.raises(ValueError, match="per-token affine"):
        ref(torch.randn(1, 8, 11, 11))


@pytest.mark.parametrize("cls", [NIPS, NAO, LinearNAO])
def test_default_models_are_the_papers_and_learn_in_the_papers_layout(cls):
    """Built with only their required arguments, the models are their papers' ``u = K f``: no
    context fit, no shared operator, a per-feature input affine (NAO: the authors' MLP ``W^P``).
    In the papers' layout (q = 0: reconstruct the context responses from the context inputs) the
    output is not the context copied, and a few Adam steps on a Darcy family reduce the loss."""
    from nips_plugin.data.fields import gaussian_random_field, lognormal_field, random_load
    from nips_plugin.data.solvers import solve_darcy
    n, d = 9, 8
    model = cls(in_channels=2 * d, out_channels=d, n_pairs=d, **({"n_modes": (4, 4)} if cls is NIPS else {}))
    assert model.context_fit == "none" and model.shared_operator is None
    assert model.input_norm.n_tokens is None and model.input_norm.n_blocks is None   # one affine per feature
    if cls is not NIPS:
        assert type(model.output_map_f).__name__ == "CoordinateKernel"
    f, u = [], []
    for seed in range(6):
        b = lognormal_field(gaussian_random_field(n, 1, seed, length_scale=0.3), median=1.0, sigma=1.0)[0]
        loads = random_load(n, d, 100 + seed, length_scale=0.2, offset_std=0.3)
        f.append(loads)
        u.append(solve_darcy(b, loads))
    f, u = (torch.tensor(np.stack(a), dtype=torch.float32) for a in (f, u))
    f, u = f / f.std(), u / u.std()
    x, target = pack_context(f, u), u.flatten(1, 2)

    def loss():
        out = model(x)
        return ((out - target).flatten(2).norm(dim=2) / target.flatten(2).norm(dim=2)).mean()

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = loss()
    assert first.item() > 0.1                        # not the context copied
    for _ in range(60):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    assert loss().item() < 0.7 * first.item()
