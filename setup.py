import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

TORCH = "torch==2.13.0"
LITERT = "ai-edge-litert>=2.3,<3"  # the LiteRT interpreter for `export --format tflite`

setup(
    name="keras-lottery",
    version=re.search(r'__version__ = "([^"]+)"', (here / "keras_lottery" / "__init__.py").read_text()).group(1),
    description="Find, verify and export lottery tickets (Frankle & Carbin, ICLR 2019) with Keras and tfmot.",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_lottery", "keras_lottery.*"]),
    # The recipes (the top-level recipes/ of a checkout links here), read with importlib.resources.
    package_data={"keras_lottery": ["recipes/*.json"]},
    python_requires=">=3.10",
    install_requires=requirements,
    # wheel: tests build the package as a wheel; jax: the Keras 3 path is tested on JAX too;
    # litert: `export --format tflite` (LiteRT's interpreter, the flatbuffer schema), tested too;
    # mkdocs, mkdocs-material, mkdocstrings: tests build the documentation site (docs/, mkdocs.yml);
    # torch: the Keras 3 path on the torch backend (pinned: an unpinned torch resolves to a CUDA
    # build of several GB; install the CPU wheel with --extra-index-url https://download.pytorch.org/whl/cpu).
    extras_require={
        "test": ["pytest>=7", "wheel", "keras-hub>=0.20", "jax[cpu]>=0.4.34", TORCH, LITERT, "mkdocs>=1.6", "mkdocs-material>=9.5",
                 "mkdocstrings[python]>=0.26"],
        "jax": ["jax[cpu]>=0.4.34"],
        "torch": [TORCH],
        "litert": [LITERT],
    },
    entry_points={"console_scripts": ["keras-lottery=keras_lottery.cli:main"]},
)
