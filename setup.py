"""Build of the optional C speedups; everything else about the package is in pyproject.toml.

``optional=True``: without a C compiler the package installs without them, and the pure-Python
code paths (which the speedups must always agree with) do all the work.

- ``otel_costs._cost_native``: pricing and the cost processor's per-span work.
- ``otel_costs._serve_native``: ``otel-costs serve``'s per-span work (staging requests by trace,
  the trace-wide rollup, framing forwarded requests); ``OTEL_COSTS_SERVE_NATIVE=0`` turns it off.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "otel_costs._cost_native",
            ["otel_costs/_cost_native.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
        Extension(
            "otel_costs._serve_native",
            ["otel_costs/_serve_native.c"],
            optional=True,
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
        ),
    ]
)
