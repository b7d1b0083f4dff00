"""PathNet's path search (Fernando et al. 2017, Section 2), host code around the `pathnet` encoder: a genotype is
one list per layer of N module indices (a repeated index activates its module once, so a layer has up to N); a
population evolves by binary tournaments in which the loser's genotype is overwritten by a mutated copy of the
winner's. The fitness (the task score after training along a path for T minibatches) is the caller's function,
so this module needs no torch."""

from __future__ import annotations

import random
from collections.abc import Callable

Path = list[list[int]]


def random_path(layers: int, modules: int, active: int, rng: random.Random) -> Path:
    """A path with `active` distinct modules in each layer (the initial population)."""
    return [sorted(rng.sample(range(modules), active)) for _ in range(layers)]


def mutate(path: Path, modules: int, rng: random.Random, prob: float | None = None) -> Path:
    """Each module index moves, with probability `prob` (default 1 / (layers * N)), by an integer drawn from
    [-2, 2], modulo `modules`. Each layer keeps its N entries (repeats included), so a path can grow back."""
    prob = 1.0 / sum(len(layer) for layer in path) if prob is None else prob
    return [sorted((m + rng.randint(-2, 2)) % modules if rng.random() < prob else m for m in layer)
            for layer in path]


def mask(path: Path, modules: int) -> list[list[float]]:
    """The encoder's `path` input for one example: [layers, modules], 1.0 where a module is active."""
    return [[1.0 if m in layer else 0.0 for m in range(modules)] for layer in path]


def evolve(fitness: Callable[[Path], float], layers: int, modules: int, active: int, population: int,
           tournaments: int, rng: random.Random) -> Path:
    """Run `tournaments` binary tournaments over a population of random paths and return the fittest path of the
    last evaluation. `fitness(path)` trains along the path (the modules it shares with other paths keep what it
    learned) and returns its score; higher is better."""
    paths = [random_path(layers, modules, active, rng) for _ in range(population)]
    scores: list[float | None] = [None] * population
    for _ in range(tournaments):
        a, b = rng.sample(range(population), 2)
        scores[a], scores[b] = fitness(paths[a]), fitness(paths[b])
        winner, loser = (a, b) if scores[a] >= scores[b] else (b, a)
        paths[loser], scores[loser] = mutate(paths[winner], modules, rng), None
    scored = [(s, i) for i, s in enumerate(scores) if s is not None]
    return paths[max(scored)[1]]
