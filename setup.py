"""Build of the optional C speedup of ``otel-costs serve``; everything else is in pyproject.toml.

``optional=True``: without a C compiler the package installs without it, and the pure-Python
code path (which the speedup must always agree with) does all the work.

- ``otel_costs._serve_native``: ``otel-costs serve``'s per-span work (staging requests by trace,
  the trace-wide rollup, framing forwarded requests); ``OTEL_COSTS_SERVE_NATIVE=0`` turns it off.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "otel_costs._serve_native",
            ["otel_costs/_serve_native.c"],
            optional=True,
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
        ),
    ]
)
