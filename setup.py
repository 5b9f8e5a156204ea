"""Build of the optional C extension ``collectors._native`` (everything else is declared in
pyproject.toml). ``optional=True``: without a C compiler the install still succeeds and the
collector runs its Python path (slower, same output)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("collectors._native", ["collectors/_native.c"],
                             extra_compile_args=["-O2"], optional=True)])
