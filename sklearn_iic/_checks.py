"""Checks of what user callables (perturbations, networks) return, tried on a few rows first."""

import inspect

import torch

from ._runtime import GlobalStream


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

    The call draws from a throwaway generator, and from torch's global
    generators only inside a section that leaves them as they were, so that
    checking changes neither the fit's random streams nor the caller's.
    Returns whether the call drew from torch's global generators.
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
    out = []

    def call():
        generator = torch.Generator(device=probe.device).manual_seed(0)
        try:
            out.append(perturbation(probe.clone(), generator))
        except Exception as exc:
            raise ValueError(
                f"perturbation {perturbation!r} failed on a batch of shape "
                f"{tuple(probe.shape)}: {type(exc).__name__}: {exc}"
            ) from exc

    draws = GlobalStream(0, probe.device).draws(call)
    check_tensor(out[0], who=f"perturbation {perturbation!r}", shape=probe.shape,
                 dtype=probe.dtype, device=probe.device)
    return draws
