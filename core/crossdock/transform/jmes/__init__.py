"""JMESPath for Crossdock: a compiler to Python functions and the function registry.

Most code uses :mod:`crossdock.transform.mapping`; :func:`compile_expression` here is the low-level
compiler (``jmespath`` errors, no mapping rules).
"""

from __future__ import annotations

from crossdock.transform.jmes.compiler import compile_expression, parse
from crossdock.transform.jmes.functions import (
    CrossdockFunctions,
    JmesFunction,
    make_function,
    register_function,
    registered_functions,
)

__all__ = [
    "CrossdockFunctions",
    "JmesFunction",
    "compile_expression",
    "make_function",
    "parse",
    "register_function",
    "registered_functions",
]
