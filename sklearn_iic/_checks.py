"""Checks of what user callables (perturbations, networks) return, tried on a few rows first."""

import inspect

import torch


def check_tensor(value, *, who, shape, dtype, device):
    """Raise a TypeError or ValueError naming ``who`` unless ``value`` is the tensor expected."""
    expected = f"a {_dtype_name(dtype)} tensor of shape {tuple(shape)} on {device}"
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{who} returned {type(value).__name__}; expected {expected}.")
    problems = []
    if tuple(value.shape) != tuple(shape):
        problems.append(f"shape {tuple(value.shape)}")
    if value.dtype != dtype:
        problems.append(f"dtype {_dtype_name(value.dtype)}")
    if value.device != device:
        problems.append(f"device {value.device}")
    if problems:
        raise ValueError(f"{who} returned a tensor of {', '.join(problems)}; expected {expected}.")
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise ValueError(f"{who} returned NaN or infinite values on finite input.")


def _dtype_name(dtype):
    return str(dtype).removeprefix("torch.")


def check_perturbation(perturbation, probe):
    """Call ``perturbation`` once on ``probe`` rows and check what it returns.

    The call draws from a throwaway generator and inside a forked torch RNG,
    so that checking changes neither the fit's random streams nor the caller's.
    """
    try:
        inspect.signature(perturbation).bind(probe, None)
    except TypeError:
        raise TypeError(
            f"perturbation {perturbation!r} must accept (x, generator); to use a "
            "one-argument transform, wrap it: sklearn_iic.perturbations.Transform(f)."
        ) from None
    except ValueError:  # no signature to read (some builtins): the call below tells
        pass
    devices = [probe.device.index or 0] if probe.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        generator = torch.Generator(device=probe.device).manual_seed(0)
        try:
            out = perturbation(probe.clone(), generator)
        except Exception as exc:
            raise ValueError(
                f"perturbation {perturbation!r} failed on a batch of shape "
                f"{tuple(probe.shape)}: {type(exc).__name__}: {exc}"
            ) from exc
    check_tensor(out, who=f"perturbation {perturbation!r}", shape=probe.shape,
                 dtype=probe.dtype, device=probe.device)
