"""Test helpers for code built on cats_dogs_other: fakes of the parts a test should not need.

Nothing at run time imports this package. It is importable (not hidden under ``tests/``) so
that the suite, the comparison harness (``compare/``) and a user's own tests share one copy,
as ``starlette.testclient`` does for Starlette applications.
"""
