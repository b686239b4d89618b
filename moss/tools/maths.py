"""The calculator (exact arithmetic, functions, unit conversion) and the equation solver
(equations and systems, derivatives, integrals, limits, simplification), both on sympy, over
expressions read without eval (expressions.py)."""

import re

import sympy
from sympy.physics import units

from moss.tools.expressions import MathError, Reader

DIGITS = 12  # decimals shown beside an exact result


def calculate(expression: str) -> str:
    """"17*23" -> "17*23 = 391"; "1/3" -> "1/3 = 1/3 ≈ 0.333333333333"; "3.5 km to mi" ->
    "3.5 km = 2.17479322... mile"."""
    value_text, target_text = _conversion(expression)
    reader = Reader(units=True)
    if target_text is None and value_text.count("=") == 1 and "==" not in value_text:
        return _check(reader, *(side.strip() for side in value_text.split("=")))
    value = reader.read(value_text)
    if target_text is not None:
        target = reader.read(target_text)
        converted = units.convert_to(value, _units_of(target))
        if converted.free_symbols or _units_of(converted / target) != 1:
            raise MathError(f"cannot convert {value_text} to {target_text}: the units differ in kind")
        amount = converted / target
        return f"{value_text} = {_decimal(amount) if amount.is_real else amount} {target_text}"
    if value.free_symbols:
        raise MathError(f"{expression!r} has unknowns: use the solver")
    return f"{expression} = {_number(value)}"


def _check(reader: Reader, left: str, right: str) -> str:
    """"6*7 = 42" checked: models write an equality where they mean to check one."""
    a, b = reader.read(left), reader.read(right)
    return f"{left} = {_number(a)} and {right} = {_number(b)}: {'equal' if sympy.simplify(a - b) == 0 else 'not equal'}"


def solve(operation: str, expression: str, variable: str = "", lower: str = "", upper: str = "",
          order: int = 1) -> str:
    """The result of one operation on `expression` (equations separated by ';' for a system)."""
    reader = Reader(variables=True)
    if operation == "solve":
        equations = [_equation(reader, part) for part in re.split(r"[;\n]", expression) if part.strip()]
        unknowns = [sympy.Symbol(v.strip()) for v in variable.split(",") if v.strip()] or \
            sorted(set().union(*(e.free_symbols for e in equations)), key=str)
        found = sympy.solve(equations, unknowns, dict=True)
        if not found:
            return f"{expression}: no solution"
        return "; ".join(", ".join(f"{k} = {_number(v)}" for k, v in s.items()) for s in found)
    expr = reader.read(expression)
    x = sympy.Symbol(variable) if variable else _one_variable(expr)
    if operation == "derivative":
        return f"d^{order}/d{x}^{order} ({expression}) = {sympy.simplify(sympy.diff(expr, x, order))}" \
            if order > 1 else f"d/d{x} ({expression}) = {sympy.simplify(sympy.diff(expr, x))}"
    if operation == "integral":
        if lower or upper:
            a, b = reader.read(lower or "0"), reader.read(upper or "0")
            return f"integral of {expression} from {lower} to {upper} = {_number(sympy.integrate(expr, (x, a, b)))}"
        return f"integral of {expression} d{x} = {sympy.integrate(expr, x)} + C"
    if operation == "limit":
        return f"limit of {expression} as {x} -> {upper} = {_number(sympy.limit(expr, x, reader.read(upper or '0')))}"
    simplified = {"simplify": sympy.simplify, "expand": sympy.expand, "factor": sympy.factor}.get(operation)
    if simplified is None:
        raise MathError(f"unknown operation {operation!r}")
    return f"{operation}({expression}) = {simplified(expr)}"


def _equation(reader: Reader, text: str) -> sympy.Expr:
    """"x^2 = 4" as x^2 - 4 (an expression alone is set to zero)."""
    sides = [s for s in re.split(r"(?<![<>!=])=(?!=)", text.replace("==", "="))]
    if len(sides) > 2:
        raise MathError(f"{text!r} has more than one '='")
    left = reader.read(sides[0])
    return left - reader.read(sides[1]) if len(sides) == 2 else left


def _one_variable(expr: sympy.Expr) -> sympy.Symbol:
    free = sorted(expr.free_symbols, key=str)
    if len(free) != 1:
        raise MathError("say which variable: the expression has " + (", ".join(map(str, free)) or "none"))
    return free[0]


def _conversion(expression: str) -> tuple[str, str | None]:
    """"3.5 km to mi" -> ("3.5 km", "mi"); no target -> (expression, None)."""
    found = re.match(r"^(.*\S)\s+(?:to|in|into|as|换算成|换成|等于多少)\s*(\S.*)$", expression.strip())
    return (found.group(1), found.group(2)) if found else (expression, None)


def _units_of(expr: sympy.Expr) -> sympy.Expr:
    return sympy.Mul(*[f for f in sympy.Mul.make_args(expr) if f.has(units.Quantity)]) or sympy.Integer(1)


def _number(value: sympy.Expr) -> str:
    """Exact, and with decimals beside it when the exact form is not already a plain number."""
    value = sympy.nsimplify(value) if isinstance(value, sympy.Float) else value
    exact = str(value)
    if value.is_Integer or not (value.is_number and value.is_real and value.is_finite):
        return exact
    shown = _decimal(value)
    return shown if shown == exact else f"{exact} ≈ {shown}"


def _decimal(value: sympy.Expr) -> str:
    return f"{float(value.evalf(DIGITS + 3)):.{DIGITS}g}"
