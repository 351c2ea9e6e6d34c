"""The compiled codec core, built when a C compiler is present (everything else is in
pyproject.toml). `optional=True`: without gcc the install still succeeds and
obd.storage.codec uses its NumPy reference core (`obd check` says which one runs)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "obd.storage._scaled",
            ["obd/storage/_scaled.c"],
            # Bit-exact floats: no fused multiply-add (baseline on arm64), no fast-math.
            extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        )
    ]
)
