"""Where and how torch runs during a fit or a prediction: device, threads, random state."""

import contextlib

import numpy as np
import torch
from sklearn.utils import check_random_state


def resolve_device(device):
    """Turn the ``device`` parameter into an available :class:`torch.device`."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was requested but CUDA is not available; "
            "use device='auto' or 'cpu'."
        )
    return device


def available_or_cpu(device):
    """``device`` if this machine has it, else the CPU: a model fitted on a GPU runs anywhere."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return device


def seed_from(random_state):
    """One int seed for every generator of a fit, drawn from ``random_state``.

    ``None`` takes fresh entropy from the operating system, so that the global
    numpy random state is neither read nor changed.
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run with ``n_threads`` intra-op threads, restoring the previous number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def local_torch_rng(seed, device):
    """Seed torch for the block and restore the global RNG state afterwards.

    Modules built and trained inside (weight initialisation, dropout) are then
    reproducible, and the caller's global torch RNG is neither read nor changed.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
