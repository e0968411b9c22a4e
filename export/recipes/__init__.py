"""The precision step's recipes, one module each (:mod:`dfma.export.recipes.base` is the interface).

Every module of this package is imported once and each :class:`~dfma.export.recipes.base.Recipe` subclass
it defines with a ``name`` is registered: a new precision is one catalogue row (``dfma.contract.graphs``,
whose ``recipe`` column names the recipe) plus one file here. :func:`register` adds one from elsewhere
(an extension, a test). :func:`recipes` lists them in catalogue order, a recipe after the one it follows.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil

from dfma.contract.graphs import CATALOGUE
from dfma.export.recipes.base import Recipe

_REGISTRY: dict[str, Recipe] = {}
_DISCOVERED = False


def register(recipe: type[Recipe] | Recipe) -> Recipe:
    """Register a recipe (class or instance) under its ``name``; ValueError when the name is taken."""
    instance = recipe() if isinstance(recipe, type) else recipe
    if instance.name in _REGISTRY and type(_REGISTRY[instance.name]) is not type(instance):
        raise ValueError(f"recipe {instance.name!r} is already registered ({type(_REGISTRY[instance.name]).__name__})")
    _REGISTRY[instance.name] = instance
    return instance


def unregister(name: str) -> None:
    """Forget a registered recipe (a test's throw-away one)."""
    _REGISTRY.pop(name, None)


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Recipe) and cls.__module__ == module.__name__ and "name" in cls.__dict__:
                register(cls)


def recipes() -> list[Recipe]:
    """Every recipe whose catalogue row exists, in catalogue order, each after the recipe it follows."""
    _discover()
    by_row = {row.recipe: row.key for row in CATALOGUE.values() if row.recipe}
    found = sorted((r for n, r in _REGISTRY.items() if n in by_row), key=lambda r: list(CATALOGUE).index(by_row[r.name]))
    ordered: list[Recipe] = []
    while found:
        ready = next(r for r in found if r.follows is None or r.follows in {o.name for o in ordered}
                     or r.follows not in {f.name for f in found})
        ordered.append(ready)
        found.remove(ready)
    return ordered


def recipe_of(key: str) -> Recipe:
    """The recipe that builds catalogue row ``key``; KeyError when none does."""
    for recipe in recipes():
        if recipe.key == key:
            return recipe
    raise KeyError(f"no recipe builds graph {key!r}; the recipes build {[r.key for r in recipes()]}")


def switches() -> dict[str, list[Recipe]]:
    """Command-line selector -> the recipes it asks for (``--fp16``: [fp16]; ``--int8``: [static, dynamic])."""
    out: dict[str, list[Recipe]] = {}
    for recipe in recipes():
        if recipe.switch is not None:
            out.setdefault(recipe.switch[0], []).append(recipe)
    return out


def how_to_build(key: str) -> str:
    """The command that adds graph ``key`` to a bundle (``export/to_precision.py --int8 static``)."""
    recipe = recipe_of(key)
    while recipe.switch is None and recipe.follows is not None:
        recipe = _REGISTRY[recipe.follows]
    flag, value = recipe.switch or ("", None)
    return " ".join(part for part in ("export/to_precision.py", flag, value) if part)


def selected(chosen: dict[str, object]) -> list[Recipe]:
    """The recipes a command line asks for: ``chosen`` maps a selector flag to its value (True for a switch,
    a choice, ``both``/``all`` for every choice, None when absent); none given: every recipe but the
    ``opt_in`` ones. Each recipe that follows a selected one comes with it."""
    everything = all(v in (None, False) for v in chosen.values())
    names: set[str] = set()
    for recipe in recipes():
        if recipe.switch is not None:
            value = chosen.get(recipe.switch[0])
            if (everything and not recipe.opt_in) or value is True or value in ("both", "all") or value == recipe.switch[1]:
                names.add(recipe.name)
        elif recipe.follows in names:
            names.add(recipe.name)
        elif recipe.follows is None and everything:
            names.add(recipe.name)
    return [r for r in recipes() if r.name in names]
