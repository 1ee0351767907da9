"""radostdb: Samba's TDB/CTDB key-value database on Ceph RADOS."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "radostdb" / "__init__.py").read_text(), re.M
).group(1)

setup(
    name="radostdb",
    version=VERSION,
    description="Samba's TDB key-value database rebuilt on Ceph RADOS omap objects",
    long_description=(HERE / "README.rst").read_text(),
    long_description_content_type="text/x-rst",
    license="GPL-3.0-or-later",
    python_requires=">=3.11",
    packages=find_packages(include=["radostdb", "radostdb.*"]),
    package_data={"radostdb._native": ["codec.c", "codec.h"]},
    setup_requires=["cffi>=1.15"],
    cffi_modules=["radostdb/_native/build.py:ffibuilder"],
    install_requires=["cffi>=1.15", "click>=8.1", "rich>=13"],
    extras_require={
        "test": ["pytest>=7.4", "hypothesis>=6.80", "pytest-timeout>=2.1", "ruff>=0.4"],
        "bench": ["pytest-benchmark>=4.0", "lmdb>=1.4", "matplotlib>=3.7"],
    },
    entry_points={
        "console_scripts": [
            "radostdb = radostdb.cli:main",
            "radostdb-bench = radostdb.bench:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Database",
        "Operating System :: POSIX :: Linux",
    ],
)
