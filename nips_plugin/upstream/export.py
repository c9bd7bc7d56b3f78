"""Write NIPS, NAO and LinearNAO into a neuraloperator source tree (see :func:`export_upstream`).

The exported modules are this package's own source text, transformed: module files
renamed so that they sit next to neuraloperator's without colliding, relative imports
rewritten to the new names, every ``nips_plugin`` reference in docstrings and comments
rewritten to the exported module that defines it, then formatted with black. Nothing is
re-implemented, so the export follows whatever the models' source is when it runs.
"""

import ast
import difflib
import functools
import importlib
import importlib.util
import inspect
import io
import re
import sys
from importlib import resources
from pathlib import Path

import torch

SOURCE = "nips_plugin"

#: exported modules: this package's module -> its name in neuraloperator. Names checked
#: against neuraloperator 2.0.0 and its main branch (layers/attention_kernel_integral.py,
#: spectral_convolution.py, ... exist there; none of these names does).
MODULES = {
    "nips_plugin.models.nips": "neuralop.models.nips",
    "nips_plugin.models.nao": "neuralop.models.nao",
    "nips_plugin.models.incontext": "neuralop.models.incontext_operator",
    "nips_plugin.layers.attention": "neuralop.layers.nonlocal_attention",
    "nips_plugin.layers.context": "neuralop.layers.incontext_layout",
    "nips_plugin.layers.context_fit": "neuralop.layers.incontext_fit",
    "nips_plugin.layers.coordinate_kernel": "neuralop.layers.coordinate_kernel",
    "nips_plugin.layers.cosine_field": "neuralop.layers.cosine_field",
    "nips_plugin.layers.cosine_kernel": "neuralop.layers.cosine_kernel",
    "nips_plugin.layers.fourier_kernel": "neuralop.layers.shared_spectral_filter",
    "nips_plugin.layers.sine_operator": "neuralop.layers.sine_series_operator",
}
#: the models; the export is their import closure (which must lie inside MODULES)
ROOTS = ("nips_plugin.models.nips", "nips_plugin.models.nao")
#: packages, for references such as ``nips_plugin.layers.SomeName``
PACKAGES = {"nips_plugin": "neuralop", "nips_plugin.models": "neuralop.models",
            "nips_plugin.layers": "neuralop.layers"}
#: what ``neuralop.models`` exports (appended to its ``__init__.py``), by exported module
MODEL_EXPORTS = {"neuralop.models.nips": ("NIPS",), "neuralop.models.nao": ("NAO", "LinearNAO")}
#: third-party packages the exported code may import (neuraloperator's own dependencies)
ALLOWED_IMPORTS = {"torch", "neuralop", "numpy", "tensorly"}

#: exported test files: template in ``nips_plugin/upstream/templates`` -> path in the tree
TESTS = {
    "models_test_nips.py": "neuralop/models/tests/test_nips.py",
    "models_test_nao.py": "neuralop/models/tests/test_nao.py",
    "layers_test_nonlocal_attention.py": "neuralop/layers/tests/test_nonlocal_attention.py",
    "layers_test_shared_spectral_filter.py": "neuralop/layers/tests/test_shared_spectral_filter.py",
    "layers_test_incontext_layout.py": "neuralop/layers/tests/test_incontext_layout.py",
}
#: reference data: case -> (fixture in the authors' reference folder, compat variant); case
#: ``c`` is written to ``neuralop/models/tests/data/c_reference.pt`` (about 45-60 KB each, mostly
#: the weights: the scripts' per-token input affine and NAO's MLP W^P); the test templates
#: parametrize over these names
REFERENCES = {
    "nips_darcy": ("script_nips_darcy", "nips_darcy"),
    "nips_mmnist": ("script_nips_mmnist", "nips_mmnist"),
    "nao_darcy": ("script_nao_darcy", "nao_darcy"),
    "linear_nao_darcy": ("script_linear_nao_darcy", "linear_nao_darcy"),
}
REFERENCE_PATH = "neuralop/models/tests/data/{case}_reference.pt"
#: relative max error allowed against the authors' outputs (as tests/models/test_compat.py)
REFERENCE_TOLERANCE = 1e-4

API_RST = "doc/source/modules/api.rst"
CONFIG_MODELS = "config/models.py"
LINE_LENGTH = 100  # neuraloperator's newest model files (models/rno.py) are black at 100
#: phrases that read oddly in neuraloperator's docs: listed in the summary for review
REVIEW_PHRASES = ("this package", "this implementation", "this plugin")


class ExportError(RuntimeError):
    """The export cannot be done (bad target folder, unmapped module or reference, ...)."""


# ----------------------------------------------------------------------------- sources


def _source_path(module):
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ExportError(f"cannot find the source of {module}")
    return Path(spec.origin)


def _resolve_relative(module, level, name):
    """Absolute name of ``from <level dots><name> import`` inside ``module`` (a file)."""
    package = module.rsplit(".", 1)[0]
    base = package.split(".")
    if level > 1:
        base = base[: -(level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(module, text):
    """``(node, absolute module)`` of every ``from ... import`` in the source, and the
    top-level names of plain ``import`` statements."""
    tree = ast.parse(text)
    froms, plain = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = (_resolve_relative(module, node.level, node.module) if node.level
                      else node.module)
            froms.append((node, target))
        elif isinstance(node, ast.Import):
            plain.update(alias.name for alias in node.names)
    return froms, plain


def _check_third_party(module, names):
    for name in names:
        top = name.split(".")[0]
        if top == SOURCE:
            continue
        if top not in ALLOWED_IMPORTS and top not in sys.stdlib_module_names:
            raise ExportError(
                f"{module} imports {name!r}, which is not one of neuraloperator's dependencies "
                f"({', '.join(sorted(ALLOWED_IMPORTS))} or the standard library)"
            )


def import_closure():
    """The modules the models import (directly or not) from this package, in a stable order."""
    order, todo = [], list(ROOTS)
    while todo:
        module = todo.pop(0)
        if module in order:
            continue
        if module not in MODULES:
            raise ExportError(
                f"the models import {module}, which has no exported name: add it to "
                f"nips_plugin.upstream.export.MODULES"
            )
        order.append(module)
        froms, plain = _imports(module, _source_path(module).read_text())
        _check_third_party(module, plain)
        for node, target in froms:
            if node.module is None:
                raise ExportError(f"{module}: 'from {'.' * node.level} import ...' is not supported "
                                  f"by the exporter; import from the module instead")
            if target.split(".")[0] == SOURCE:
                todo.append(target)
            else:
                _check_third_party(module, [target])
    return order


# ----------------------------------------------------------------------------- transforms


def _relative(from_module, to_module):
    """``to_module`` as a relative import inside ``from_module`` (both absolute)."""
    package = from_module.split(".")[:-1]
    target = to_module.split(".")
    common = 0
    while common < min(len(package), len(target)) and package[common] == target[common]:
        common += 1
    if common == 0:
        raise ExportError(f"{to_module} is not inside the package of {from_module}")
    return "." * (len(package) - common + 1) + ".".join(target[common:])


_FROM = re.compile(r"from\s+([.\w]+)\s+import\b")


def _rewrite_imports(module, text):
    """Relative and ``nips_plugin`` imports -> relative imports of the exported names; absolute
    ``neuralop.*`` imports -> relative (neuraloperator's own style)."""
    exported = MODULES[module]
    lines = text.splitlines(keepends=True)
    froms, _ = _imports(module, text)
    for node, target in froms:
        if target.split(".")[0] == SOURCE:
            new_target = MODULES[target]
        elif target.split(".")[0] == "neuralop" and node.level == 0:
            new_target = target
        else:
            continue
        i = node.lineno - 1
        head, tail = lines[i][: node.col_offset], lines[i][node.col_offset:]
        match = _FROM.match(tail)
        if match is None:
            raise ExportError(f"{module}, line {node.lineno}: cannot parse the import {tail.strip()!r}")
        tail = tail[: match.start(1)] + _relative(exported, new_target) + tail[match.end(1):]
        lines[i] = head + tail
    return "".join(lines)


_REFERENCE = re.compile(r"\bnips_plugin(?:\.[A-Za-z_]\w*)*")


def _rewrite_reference(dotted):
    """``nips_plugin.a.b.C.meth`` -> the exported module (or ``neuralop.models``) that has it."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):          # the longest module prefix that is exported
        prefix = ".".join(parts[:n])
        if prefix in MODULES:
            return ".".join([MODULES[prefix]] + parts[n:])
        if prefix in PACKAGES:
            if n == len(parts):
                if prefix == SOURCE:
                    break
                return PACKAGES[prefix]
            name = parts[n]
            obj = getattr(importlib.import_module(prefix), name, None)
            home = getattr(obj, "__module__", None)
            if home in MODULES:
                exported = MODULES[home]
                if name in MODEL_EXPORTS.get(exported, ()):
                    return ".".join(["neuralop.models", name] + parts[n + 1:])
                return ".".join([exported, name] + parts[n + 1:])
            break
    raise ExportError(f"cannot rewrite the reference {dotted!r}: it names nothing the export contains")


def _rewrite_references(module, text):
    try:
        return _REFERENCE.sub(lambda m: _rewrite_reference(m.group(0)), text)
    except ExportError as err:
        raise ExportError(f"{module}: {err}") from None


def _needs_future_annotations(tree):
    """PEP 604 unions (``int | None``) in annotations: evaluated at definition time, they fail on
    Python 3.9, which neuraloperator supports."""
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations = [a.annotation for a in args.posonlyargs + args.args + args.kwonlyargs
                           + [args.vararg, args.kwarg] if a is not None] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in annotations:
            if annotation is not None and any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                                              for n in ast.walk(annotation)):
                return True
    return False


def _add_future_annotations(text):
    tree = ast.parse(text)
    if not _needs_future_annotations(tree):
        return text
    if any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
           any(a.name == "annotations" for a in n.names) for n in tree.body):
        return text
    lines = text.splitlines(keepends=True)
    first = tree.body[0]
    at = first.end_lineno if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                              and isinstance(first.value.value, str)) else 0
    lines.insert(at, "\nfrom __future__ import annotations\n")
    return "".join(lines)


@functools.lru_cache(maxsize=64)
def _black(text, where):
    try:
        import black
    except ImportError:
        raise ExportError(
            "the export formats its files with black, which is not installed: "
            "pip install 'nips-plugin[upstream]' (or pip install black)"
        ) from None
    try:
        return black.format_str(text, mode=black.Mode(line_length=LINE_LENGTH))
    except Exception as err:  # black.InvalidInput and friends
        raise ExportError(f"black could not format {where}: {err}") from err


def _check_exported(text, where):
    if SOURCE in text:
        lines = [f"  {i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1) if SOURCE in line]
        raise ExportError(f"{where} still mentions {SOURCE}:\n" + "\n".join(lines))
    try:
        ast.parse(text, feature_version=(3, 9))
    except SyntaxError as err:
        raise ExportError(f"{where} is not valid Python 3.9 (neuraloperator's oldest): {err}") from err


def transform_module(module):
    """The exported source text of ``module`` (a key of :data:`MODULES`)."""
    return _transform(module, _source_path(module).read_text())


@functools.lru_cache(maxsize=64)
def _transform(module, text):
    text = _rewrite_imports(module, text)
    text = _rewrite_references(module, text)
    text = _add_future_annotations(text)
    text = _black(text, module)
    _check_exported(text, MODULES[module])
    return text


def _module_path(exported):
    return Path(*exported.split(".")).with_suffix(".py")


# ----------------------------------------------------------------------------- reference data


def _default_reference_dir():
    root = Path(importlib.import_module(SOURCE).__file__).resolve().parent.parent
    return root / "tests" / "models" / "data" / "authors_reference"


def _plain(value):
    """Constructor arguments as plain types (tuples -> lists), loadable with weights_only=True."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ExportError(f"constructor argument {value!r} is not a plain value")


def reference_records(reference_dir=None):
    """``{file in the tree: record}``: the authors' recorded outputs in our layout, one per case.

    Each fixture's state dict (the authors' layout) is converted with
    :func:`nips_plugin.compat.from_reference_state_dict`; a record holds the model's
    ``model_arch``, its constructor ``kwargs``, its ``state_dict``, the packed input ``x`` and
    the script's output ``out`` in the model's output layout, batch element 0 only.
    """
    from ..compat import from_reference_state_dict
    from ..layers.context import pack_context

    folder = Path(reference_dir) if reference_dir is not None else _default_reference_dir()
    records = {}
    for case, (fixture_name, variant) in REFERENCES.items():
        fixture_path = folder / f"{fixture_name}.pt"
        if not fixture_path.exists():
            raise ExportError(
                f"the authors' reference fixture {fixture_path} is missing: pass the folder "
                f"holding script_*.pt (the repository's tests/models/data/authors_reference) "
                f"as reference_dir / --reference-data"
            )
        fixture = torch.load(fixture_path, weights_only=True)
        model = from_reference_state_dict(fixture["state_dict"], variant).eval()
        xy, expected = fixture["xy"][:1].float(), fixture["out"][:1].float()
        _, T, d = xy.shape
        c, n = fixture.get("components", 1), fixture["grid"]
        f, u = xy.mT.reshape(1, d, 2, c, n, n).unbind(2)  # token blocks [f_1..f_c, u_1..u_c]
        x = pack_context(f, u).contiguous()
        out = expected.mT.reshape(1, d * c, n, n).contiguous()  # channel = pair*c + component
        with torch.no_grad():
            ours = model(x)
        error = ((ours - out).abs().max() / out.abs().max()).item()
        if error > REFERENCE_TOLERANCE:
            raise ExportError(f"{case}: the converted model is {error:.2e} away from the authors' "
                              f"output (tolerance {REFERENCE_TOLERANCE})")
        kwargs = dict(model._init_kwargs)
        if kwargs.pop("args", ()) != ():
            raise ExportError(f"{case}: the model was built with positional arguments")
        kwargs.pop("_name", None)
        kwargs.pop("_version", None)
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
                 if k != "_metadata"}
        records[REFERENCE_PATH.format(case=case)] = {
            "model_arch": model._name, "kwargs": {k: _plain(v) for k, v in kwargs.items()},
            "state_dict": state, "x": x.clone(), "out": out.clone()}
    return records


# ----------------------------------------------------------------------------- writing


class _Writer:
    """Writes files under the target, recording what changed (the pull request's size)."""

    def __init__(self, root):
        self.root = root
        self.files = []

    def text(self, rel, new, kind):
        path = self.root / rel
        old = path.read_text() if path.exists() else None
        if old == new:
            self.files.append({"path": rel, "kind": kind, "status": "unchanged",
                               "lines": len(new.splitlines()), "lines_added": 0, "lines_removed": 0})
            return
        diff = list(difflib.unified_diff((old or "").splitlines(), new.splitlines(), lineterm="", n=0))
        added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
        removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new)
        self.files.append({"path": rel, "kind": kind, "status": "written" if old is None else "updated",
                           "lines": len(new.splitlines()), "lines_added": added, "lines_removed": removed})

    def binary(self, rel, data, kind):
        path = self.root / rel
        old = path.read_bytes() if path.exists() else None
        status = "unchanged" if old == data else ("written" if old is None else "updated")
        if status != "unchanged":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.files.append({"path": rel, "kind": kind, "status": status, "bytes": len(data),
                           "lines": 0, "lines_added": 0, "lines_removed": 0})


def _top_level_names(text):
    names = set()
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _check_no_collision(root, rel, new):
    """Refuse to overwrite one of neuraloperator's own files (one that is not an earlier export)."""
    path = root / rel
    if not path.exists():
        return
    try:
        old_names = _top_level_names(path.read_text())
    except SyntaxError:
        old_names = set()
    if old_names and not old_names & _top_level_names(new):
        raise ExportError(f"{path} exists and is not an earlier export of these models: the export "
                          f"would overwrite it (rename the module in nips_plugin.upstream.export)")


def _append_lines(text, lines):
    present = {line.strip() for line in text.splitlines()}
    missing = [line for line in lines if line not in present]
    if not missing:
        return text
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "\n".join(missing) + "\n"


API_MODELS = """\
.. _nips_api:

Neural Interpretable PDEs (NIPS)
--------------------------------

In-context neural operators read a context of input/response pairs of one system, packed in the
channels of the input (see :func:`neuralop.layers.incontext_layout.pack_context`), and predict
the responses to query inputs with a data-dependent kernel.

.. autosummary::
    :toctree: generated
    :template: class.rst

    NIPS

~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

.. _nao_api:

Nonlocal Attention Operators (NAO)
----------------------------------

.. autosummary::
    :toctree: generated
    :template: class.rst

    NAO
    LinearNAO

~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

"""

API_LAYERS = """\
.. _nonlocal_attention_api:

Nonlocal Attention (In-Context) Blocks
--------------------------------------

.. automodule:: neuralop.layers.nonlocal_attention
    :no-members:
    :no-inherited-members:

.. autosummary::
    :toctree: generated
    :template: class.rst

    NonlocalAttentionLayer
    SlabNorm
    TokenLinear

.. automodule:: neuralop.layers.shared_spectral_filter
    :no-members:
    :no-inherited-members:

.. autosummary::
    :toctree: generated
    :template: class.rst

    SharedSpectralFilter

.. automodule:: neuralop.layers.incontext_layout
    :no-members:
    :no-inherited-members:

.. autosummary::
    :toctree: generated
    :template: function.rst

    pack_context
    unpack_context

~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

"""


def _insert_before(lines, index, block):
    return lines[:index] + block.splitlines(keepends=True) + lines[index:]


def _update_api_rst(text):
    """Insert the models at the end of the Models section and the layers before Channel MLP."""
    lines = text.splitlines(keepends=True)
    notes = []
    if ".. _nips_api:" not in text:
        try:
            layers_ref = next(i for i, l in enumerate(lines) if l.strip() == ".. _neuralop_layers_ref:")
        except StopIteration:
            raise ExportError(f"{API_RST} has no '.. _neuralop_layers_ref:' label: cannot find the "
                              f"end of the Models section") from None
        at = layers_ref
        # upstream closes the Models section with a ``.. raw:: html`` rule: insert before it
        for i in range(layers_ref - 1, max(layers_ref - 8, -1), -1):
            if lines[i].strip() == ".. raw:: html":
                at = i
                break
        lines = _insert_before(lines, at, API_MODELS)
        notes.append("models")
    if ".. _nonlocal_attention_api:" not in text:
        heading = [i for i in range(1, len(lines)) if lines[i - 1].strip() == "Channel MLP"
                   and set(lines[i].strip()) == {"-"}]
        if heading:
            lines = _insert_before(lines, heading[0] - 1, API_LAYERS)
            notes.append("layers")
    return "".join(lines), notes


#: config field types where the default does not tell (None defaults, floats given as ints)
CONFIG_TYPES = {
    "grid_shape": "Optional[List[int]]",
    "coord_range": "Optional[List[float]]",
    "output_map_contract": "Optional[str]",
    "attention_order": "Optional[str]",
    "input_modes": "Optional[Any]",
    "shared_operator_modes": "Optional[Any]",
    "output_map_chunk_mb": "float",
}


def _config_class(cls, classes=()):
    """A zencfg model config in upstream's style (``config/models.py``) from the signature; a
    model that inherits its constructor from another of ``classes`` derives from its config."""
    for base in cls.__mro__[1:]:
        if base in classes and "__init__" not in cls.__dict__ and cls.__init__ is base.__init__:
            return f'class {cls.__name__}Config({base.__name__}Config):\n    model_arch: str = "{cls._name}"\n'
    lines = [f"class {cls.__name__}Config(ModelConfig):",
             f'    model_arch: str = "{cls._name}"']
    for name, param in inspect.signature(cls).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        field = "data_channels" if name == "in_channels" else name
        default = param.default
        if default is inspect.Parameter.empty:
            lines.append(f"    {field}: int")
            continue
        default = _plain(default)
        kind = CONFIG_TYPES.get(name)
        if kind is None:
            if isinstance(default, bool):
                kind = "bool"
            elif isinstance(default, (int, float, str)):
                kind = type(default).__name__
            elif isinstance(default, list):
                kind = "List[float]" if any(isinstance(v, float) for v in default) else "List[int]"
            else:
                kind = "Optional[Any]"
        if kind == "float" and isinstance(default, int):
            default = float(default)
        value = f'"{default}"' if isinstance(default, str) else repr(default)
        lines.append(f"    {field}: {kind} = {value}")
    return "\n".join(lines) + "\n"


def _update_config(text, classes):
    missing = [cls for cls in classes if f"class {cls.__name__}Config(" not in text]
    if not missing:
        return text, []
    if "class ModelConfig(" not in text:
        raise ExportError(f"{CONFIG_MODELS} has no ModelConfig class to derive the configs from")
    needed = {"List", "Optional", "Any"}
    typing_line = re.search(r"^from typing import (.+)$", text, flags=re.M)
    have = {n.strip() for n in typing_line.group(1).split(",")} if typing_line else set()
    if needed - have:
        names = ", ".join(sorted(have | needed))
        text = (text.replace(typing_line.group(0), f"from typing import {names}") if typing_line
                else f"from typing import {names}\n" + text)
    body = "\n\n".join(_config_class(cls, classes) for cls in missing)
    return text.rstrip("\n") + "\n\n\n" + body, [cls.__name__ + "Config" for cls in missing]


def export_upstream(target_dir, reference_dir=None):
    """Write NIPS, NAO and LinearNAO, their layers and tests into a neuraloperator source tree.

    Writes into ``target_dir`` (the folder holding ``neuralop/``):

    * the models into ``neuralop/models/`` and the layers they import into
      ``neuralop/layers/``, renamed so as not to collide with neuraloperator's modules
      (:data:`MODULES`), with relative imports and every ``nips_plugin`` reference rewritten,
      formatted with black (line length 100);
    * ``from .nips import NIPS`` and ``from .nao import NAO, LinearNAO`` appended to
      ``neuralop/models/__init__.py`` (once);
    * tests in neuraloperator's style (``neuralop/models/tests/test_nips.py``,
      ``test_nao.py``, ``neuralop/layers/tests/test_*.py``) and
      ``neuralop/models/tests/data/<case>_reference.pt``: the authors' recorded outputs,
      converted to these models' layout, so the tests need nothing from this package;
    * where the tree has them (a git checkout of neuraloperator, not an installed wheel),
      ``doc/source/modules/api.rst`` entries and zencfg config classes in ``config/models.py``.

    Running it again rewrites the same files and adds nothing twice.

    Parameters
    ----------
    target_dir : str or path-like
        Root of a neuraloperator source tree (holds ``neuralop/``).
    reference_dir : str or path-like, optional
        Folder with the authors' reference fixtures ``script_*.pt``; by default the
        repository's ``tests/models/data/authors_reference`` (found from an editable install
        or a source checkout).

    Returns
    -------
    dict
        ``target``; ``files``: one dict per file touched (``path`` relative to the target,
        ``kind``, ``status`` in {"written", "updated", "unchanged"}, ``lines``,
        ``lines_added``, ``lines_removed``, and ``bytes`` for data files); ``lines_added``: the
        total; ``optional``: what happened to ``api.rst`` and ``config/models.py``
        ("updated: ...", "already present" or "skipped: ..."); ``review``: lines of the
        exported docstrings that speak of "this package" or the like.

    Raises
    ------
    ExportError
        If ``target_dir`` has no ``neuralop/`` package, a module or reference cannot be
        exported, black is missing, or an exported file would still mention ``nips_plugin``.
    """
    root = Path(target_dir)
    if not (root / "neuralop" / "models" / "__init__.py").is_file():
        raise ExportError(f"{root} is not a neuraloperator source tree: it has no "
                          f"neuralop/models/__init__.py (pass the folder that holds neuralop/)")
    # everything is computed before anything is written
    closure = import_closure()
    for module in closure:
        _check_no_collision(root, _module_path(MODULES[module]).as_posix(),
                            _source_path(module).read_text())
    sources = {_module_path(MODULES[m]).as_posix(): transform_module(m) for m in closure}
    tests = {}
    package = resources.files(f"{SOURCE}.upstream.templates")
    for template, rel in TESTS.items():
        text = _black(package.joinpath(template).read_text(), template)
        _check_exported(text, rel)
        tests[rel] = text
    records = reference_records(reference_dir)
    for rel, text in tests.items():
        _check_no_collision(root, rel, text)

    writer = _Writer(root)
    for rel, text in sources.items():
        writer.text(rel, text, "model" if rel.startswith("neuralop/models/") else "layer")
    for rel, text in tests.items():
        writer.text(rel, text, "test")
    for rel, record in records.items():
        buffer = io.BytesIO()
        torch.save(record, buffer)
        data = buffer.getvalue()
        torch.load(io.BytesIO(data), weights_only=True)  # the tests load it this way
        writer.binary(rel, data, "test data")

    init = "neuralop/models/__init__.py"
    exports = [f"from .{module.rsplit('.', 1)[1]} import {', '.join(names)}"
               for module, names in MODEL_EXPORTS.items()]
    writer.text(init, _append_lines((root / init).read_text(), exports), "models/__init__")

    optional = {}
    api = root / API_RST
    if api.exists():
        text, added = _update_api_rst(api.read_text())
        writer.text(API_RST, text, "docs")
        optional[API_RST] = f"updated: {', '.join(added)}" if added else "already present"
    else:
        optional[API_RST] = "skipped: not in the target (not a source checkout of neuraloperator)"
    config = root / CONFIG_MODELS
    if config.exists():
        from ..models import NAO, NIPS, LinearNAO
        text, added = _update_config(config.read_text(), [NIPS, NAO, LinearNAO])
        compile(text, str(config), "exec")
        writer.text(CONFIG_MODELS, text, "config")
        optional[CONFIG_MODELS] = f"updated: {', '.join(added)}" if added else "already present"
    else:
        optional[CONFIG_MODELS] = "skipped: not in the target (not a source checkout of neuraloperator)"

    for entry in writer.files:   # the promise of the export: nothing written mentions this package
        path = root / entry["path"]
        if entry["kind"] != "test data":
            assert SOURCE not in path.read_text(), f"{path} mentions {SOURCE}"
    review = [f"{rel}:{i}: {line.strip()}" for rel, text in sources.items()
              for i, line in enumerate(text.splitlines(), 1)
              if any(p in line.lower() for p in REVIEW_PHRASES)]
    return {"target": str(root), "files": writer.files,
            "lines_added": sum(f["lines_added"] for f in writer.files),
            "optional": optional, "review": review}


def format_summary(summary):
    """The summary of :func:`export_upstream` as text (what the command prints)."""
    out = [f"exported NIPS, NAO and LinearNAO into {summary['target']}"]
    width = max(len(f["path"]) for f in summary["files"])
    for f in summary["files"]:
        size = f"{f['bytes'] / 1024:.1f} KiB" if "bytes" in f else f"{f['lines']} lines"
        change = f"+{f['lines_added']}" + (f" -{f['lines_removed']}" if f["lines_removed"] else "")
        out.append(f"  {f['status']:9s} {f['path']:{width}s}  {size:>11s}  {change}")
    written = sum(f["status"] != "unchanged" for f in summary["files"])
    out.append(f"{written} of {len(summary['files'])} files changed, {summary['lines_added']} lines added")
    for rel, status in summary["optional"].items():
        out.append(f"{rel}: {status}")
    if summary["review"]:
        out.append("to review (phrases written for this package):")
        out.extend(f"  {line}" for line in summary["review"])
    return "\n".join(out)
