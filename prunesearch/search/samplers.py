"""The samplers a search may use, by name: ``search.sampler`` in an experiment file.

The registry is the one list: the experiment reader's allowed names, its error message and the
sampler built for each worker all come from it. Adding a sampler is one factory and one line here.
Every factory gets the worker's seed (workers get different seeds so they do not propose in
lockstep) and a population size (half the trials) for the samplers that keep one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from prunesearch.errors import InputError

if TYPE_CHECKING:
    import optuna

Factory = Callable[[int, int], "optuna.samplers.BaseSampler"]


def _tpe(seed: int, population: int) -> optuna.samplers.BaseSampler:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5, constant_liar=True)


def _nsga2(seed: int, population: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(population_size=max(4, population), seed=seed)


def _random(seed: int, population: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _gp(seed: int, population: int) -> optuna.samplers.BaseSampler:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5)


SAMPLERS: dict[str, Factory] = {"tpe": _tpe, "nsga2": _nsga2, "random": _random, "gp": _gp}


def make_sampler(name: str, seed: int, population: int) -> optuna.samplers.BaseSampler:
    """The multi-objective sampler registered as ``name``."""
    factory = SAMPLERS.get(name)
    if factory is None:
        raise InputError(f"unknown sampler {name!r}; registered: {', '.join(SAMPLERS)}")
    return factory(seed, population)
