"""Package list only (everything else is in pyproject.toml): every package under mmspec/, found on disk so that a
new component folder ships without another edit, plus backends/ installed as mmspec.backends."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["mmspec", "mmspec.*"]), "mmspec.backends"])
