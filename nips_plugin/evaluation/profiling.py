"""Measuring the cost of a call: wall time, peak memory, out-of-memory detection.

Used by the scaling study (:mod:`nips_plugin.evaluation.scaling`), the benchmark
and ``benchmarks/cpu_train_step.py``.

What :func:`peak_memory_mb` measures
------------------------------------
* CUDA: the peak of ``torch.cuda.max_memory_allocated`` during the call minus
  the memory allocated just before it, i.e. the largest amount of tensor
  memory the call added at any moment (PyTorch's caching allocator; memory
  reserved but unused by the allocator, cuFFT/cuBLAS workspaces outside it and
  the CUDA context are not counted).
* CPU: the call runs once in a forked child process, which reports the growth
  of its resident set: its peak RSS (``VmHWM`` of ``/proc/self/status``, a
  high-water mark kept by the kernel, so short peaks are not missed) minus its
  RSS just before the call, minus the growth of its file-backed resident
  pages over the call (``RssFile``: library code is not copied at fork, the
  child faults in the code it runs, about 20 MB for a train step). Pages
  inherited from the parent count in both, so the result is the anonymous
  memory the call itself touched: tensors (including optimiser state and
  gradients created by the call) and allocator caches. Before the call the
  child hands the parent's retained free heap back to the system, makes glibc
  map allocations above 128 KiB afresh (otherwise reused free memory would
  hide allocations) and resets its high-water mark (``/proc/self/clear_refs``);
  the resolution is about a page. Free memory glibc still holds in chunks can
  absorb allocations (its pages then count when touched, possibly more than
  once over the call): measure before the parent runs the workload itself,
  and build large state in the child with ``setup``. The child
  uses one thread (a forked OpenMP runtime may hang with more), which can
  change per-thread scratch memory slightly. An optional address-space limit
  makes an oversized call fail in the child instead of exhausting the machine.
  Returns None where ``fork`` is unavailable.
"""

import ctypes
import math
import multiprocessing
import os
import resource
import statistics
import time
from contextlib import nullcontext

import torch


class ChildMemoryError(MemoryError):
    """The child process measuring a CPU call ran out of memory or was killed (OOM killer)."""


def is_oom(exc):
    """Whether ``exc`` reports running out of memory.

    True for ``torch.OutOfMemoryError`` (CUDA), ``MemoryError`` (including
    :class:`ChildMemoryError`, a measuring child killed on CPU) and a
    ``RuntimeError`` whose message says "out of memory" or that the CPU
    allocator could not allocate (including ``std::bad_alloc``).
    """
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        text in message for text in ("out of memory", "allocate memory", "bad_alloc"))


def _synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device="cpu", warmup=2, repeat=5):
    """Median wall time of ``fn()`` in seconds.

    Parameters
    ----------
    fn : callable
        Called ``warmup + repeat`` times.
    device : str or torch.device
        On CUDA the device is synchronised before and after each timed call.
    warmup, repeat : int

    Returns
    -------
    float
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _status_bytes(field):
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``RssFile``, ``VmSize``...) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def _release_free_heap():
    """glibc: return freed heap memory to the system and serve large allocations from
    fresh mappings, so that the resident set follows the memory actually in use (the
    parent's retained free memory would otherwise absorb the call's allocations)."""
    libc = ctypes.CDLL(None)  # the C library already loaded in this process
    if not hasattr(libc, "malloc_trim"):  # not glibc
        return
    libc.mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD = 128 KiB (also stops its dynamic growth)
    libc.malloc_trim(0)


def _measure_in_child(fn, setup, limit_mb, conn):
    """Child side of :func:`peak_memory_mb`: send ``("ok", MB)`` or ``("error", oom, text)``."""
    try:
        torch.set_num_threads(1)
        if limit_mb is not None:
            limit = _status_bytes("VmSize") + int(limit_mb * 2**20)
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        state = None if setup is None else setup()
        if os.access("/proc/self/clear_refs", os.W_OK):  # else the peak could not drop below the trim
            _release_free_heap()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak resident set to the current one
        before, files_before = _status_bytes("VmRSS"), _status_bytes("RssFile")
        fn() if setup is None else fn(state)
        peak = _status_bytes("VmHWM")
        # library pages are not copied at fork: the child faults in the code it runs
        files = _status_bytes("RssFile") - files_before
        conn.send(("ok", max(peak - before - files, 0) / 2**20))
    except BaseException as exc:  # report everything: the parent decides what it means
        conn.send(("error", is_oom(exc), f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _peak_memory_cpu(fn, setup, limit_mb, timeout_s):
    if "fork" not in multiprocessing.get_all_start_methods() or not os.path.exists("/proc/self/status"):
        return None
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_measure_in_child, args=(fn, setup, limit_mb, sender), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise TimeoutError(f"memory measurement did not finish in {timeout_s} s")
        result = receiver.recv()
    except EOFError:  # the child died without reporting: killed, typically by the OOM killer
        child.join()
        raise ChildMemoryError(f"the measuring child process died (exit code {child.exitcode}); "
                               f"most likely out of memory") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()
    if result[0] == "ok":
        return result[1]
    _, oom, text = result
    raise (ChildMemoryError if oom else RuntimeError)(f"in the measuring child: {text}")


def peak_memory_mb(fn, device="cpu", limit_mb=None, timeout_s=3600, setup=None):
    """Peak memory (MB, 2**20 bytes) added by calling ``fn()`` once (see the module docstring).

    Parameters
    ----------
    fn : callable
        On CPU it runs in a forked child: its side effects (e.g. an optimiser
        step) do not reach the caller.
    device : str or torch.device
    limit_mb : float, optional
        CPU only: the child may grow its address space by at most this much
        (``setup`` included); beyond it allocations fail and
        :class:`ChildMemoryError` is raised.
    timeout_s : float
        CPU only: give up (``TimeoutError``) after this long.
    setup : callable, optional
        Run first, not measured; ``fn`` is then called with its result. On CPU
        it runs in the child too, so the caller never holds what it builds
        (e.g. a model and a batch too large for the caller).

    Returns
    -------
    float or None
        None on CPU where ``fork`` (or ``/proc``) is unavailable.

    Raises
    ------
    ChildMemoryError
        CPU: the call ran out of memory in the child (or the child was killed).
    torch.OutOfMemoryError
        CUDA: raised by the call itself.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return _peak_memory_cpu(fn, setup, limit_mb, timeout_s)
    state = None if setup is None else setup()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn() if setup is None else fn(state)
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def available_memory_mb():
    """Memory available to new processes (``MemAvailable`` of ``/proc/meminfo``), in MB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20


def autocast_context(device, dtype):
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context for None / float32."""
    if dtype is None or dtype == torch.float32:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def train_step_fn(model, x, y, loss, optimizer, amp_dtype=None, scaler=None):
    """A closure running one training step: forward, loss, backward, optimiser step.

    This is the "train step" of the reference timings (forward + relative L2 +
    backward + Adam).

    Parameters
    ----------
    model : torch.nn.Module
    x, y : torch.Tensor
        One batch.
    loss : callable
        ``loss(prediction, y)`` -> scalar tensor.
    optimizer : torch.optim.Optimizer
    amp_dtype : torch.dtype, optional
        Run forward and loss under ``torch.autocast`` with this dtype.
    scaler : torch.amp.GradScaler, optional
        Loss scaling (float16).

    Returns
    -------
    callable
        No arguments; returns the loss tensor.
    """
    device = x.device

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, amp_dtype):
            value = loss(model(x), y)
        if scaler is None:
            value.backward()
            optimizer.step()
        else:
            scaler.scale(value).backward()
            scaler.step(optimizer)
            scaler.update()
        return value

    return step


def inference_fn(model, x, amp_dtype=None):
    """A closure running the forward pass of ``model`` on ``x`` without autograd."""
    def infer():
        with torch.no_grad(), autocast_context(x.device, amp_dtype):
            return model(x)

    return infer


def relative_l2_loss(prediction, y):
    """Relative L2 error of each sample, summed over the batch (the reference scripts' loss)."""
    diff = torch.linalg.vector_norm((prediction.float() - y).flatten(1), dim=1)
    return (diff / torch.linalg.vector_norm(y.flatten(1), dim=1).clamp_min(1e-12)).sum()


def power_law_extrapolate(xs, ys, x):
    """Extrapolate ``y(x)`` from the last two points ``(xs, ys)`` along a power law
    (a straight line in log-log); None with fewer than two positive points."""
    pts = [(a, b) for a, b in zip(xs, ys) if a and b and a > 0 and b > 0][-2:]
    if len(pts) < 2 or pts[0][0] == pts[1][0]:
        return None
    (x0, y0), (x1, y1) = pts
    slope = math.log(y1 / y0) / math.log(x1 / x0)
    return y1 * (x / x1) ** max(slope, 0.0)
