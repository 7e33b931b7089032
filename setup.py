"""Packages for setuptools (the rest of the metadata is in pyproject.toml).

The repository's top-level ``configs/`` folder ships as the package data ``pipelines.configs``,
so that an installed ``ctrobust`` finds its configs without a checkout
(``ctrobust config list``, ``ctrobust run demo``). pyproject.toml cannot list found packages
and a mapped one together, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["ctrobust*", "dicom_io*", "pipelines*"]),
        "pipelines.configs",
    ],
    package_dir={"pipelines.configs": "configs"},
)
