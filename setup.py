"""Build of the optional C speedups; everything else about the package is in pyproject.toml.

``optional=True``: without a C compiler the package installs without them, and the pure-Python
code paths (which the speedups must always agree with) do all the work.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "otel_costs._cost_native",
            ["otel_costs/_cost_native.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
