"""Builds the optional C extension of ``otel-costs serve`` (``otel_costs._serve_native``).

Everything else is in ``pyproject.toml``. The extension is optional: without a C compiler
or Python headers the build goes on without it and ``serve`` uses its pure-Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "otel_costs._serve_native",
            ["otel_costs/_serve_native.c"],
            optional=True,
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
        )
    ]
)
