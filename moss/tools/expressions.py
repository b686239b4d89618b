"""Maths written by a model or a person, read into exact sympy expressions without running any of
it as Python: the text is parsed by Python's own parser, each node is checked against a short list
(numbers, + - * / // % ** and ^, calls to named functions, named constants and units, one-word
variables), and the expression is built from sympy's objects. sympy's own parse_expr would eval()
the text; whatever a model writes is untrusted."""

import ast
import re
from dataclasses import dataclass

import sympy
from sympy.physics import units

FUNCTIONS = {
    "sqrt": sympy.sqrt, "cbrt": sympy.cbrt, "root": sympy.root, "exp": sympy.exp, "log": sympy.log,
    "ln": sympy.log, "log10": lambda x: sympy.log(x, 10), "log2": lambda x: sympy.log(x, 2),
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "asin": sympy.asin, "acos": sympy.acos,
    "atan": sympy.atan, "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "abs": sympy.Abs,
    "floor": sympy.floor, "ceil": sympy.ceiling, "round": lambda x, n=0: sympy.Float(round(float(x), int(n))),
    "factorial": sympy.factorial, "gcd": sympy.gcd, "lcm": sympy.lcm, "binomial": sympy.binomial,
    "min": sympy.Min, "max": sympy.Max, "mod": sympy.Mod,
}
CONSTANTS = {"pi": sympy.pi, "π": sympy.pi, "e": sympy.E, "E": sympy.E, "i": sympy.I, "I": sympy.I,
             "oo": sympy.oo, "inf": sympy.oo}
# Units sympy names otherwise or not at all (sympy.physics.units has km, mile, hour, liter...).
EXTRA_UNITS = {"lb": units.pound, "lbs": units.pound, "oz": sympy.Rational("28.349523125") * units.gram,
               "min": units.minute, "kW": 1000 * units.watt, "kWh": 1000 * units.watt * units.hour,
               "mph": units.mile / units.hour, "kmh": units.kilometer / units.hour, "kph": units.kilometer / units.hour,
               "week": 7 * units.day, "weeks": 7 * units.day, "gallon": sympy.Rational("3.785411784") * units.liter,
               "cal": sympy.Rational("4.184") * units.joule, "kcal": 4184 * units.joule,
               "acre": sympy.Rational("4046.8564224") * units.meter ** 2}
MAX_EXPONENT = 10_000  # 2**10000 is exact and instant; 10**10**10 would fill the memory
MAX_FACTORIAL = 5_000
MAX_DIGITS = 100_000
MAX_LENGTH = 1_000


class MathError(ValueError):
    """Text that is not an expression this reader takes; the message says what to change."""


@dataclass(frozen=True)
class Reader:
    """What an expression may name: free variables (the solver) and units (the calculator)."""
    variables: bool = False
    units: bool = False

    def read(self, text: str) -> sympy.Expr:
        if len(text) > MAX_LENGTH:
            raise MathError(f"the expression is longer than {MAX_LENGTH} characters")
        source = _python(text.strip())
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError:
            raise MathError(f"cannot read {text!r} as maths") from None
        return self._node(tree.body)

    def _node(self, node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return sympy.Rational(str(node.value)) if isinstance(node.value, float) else sympy.Integer(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self._node(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return self._binary(node)
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS \
                and not node.keywords:
            args = [self._node(a) for a in node.args]
            if node.func.id == "factorial" and args and args[0].is_number and abs(args[0]) > MAX_FACTORIAL:
                raise MathError(f"factorial of more than {MAX_FACTORIAL} is too large")
            try:
                return FUNCTIONS[node.func.id](*args)
            except TypeError:
                raise MathError(f"{node.func.id} takes other arguments") from None
        raise MathError(f"cannot use {ast.unparse(node)!r}: only numbers, + - * / ^ %, "
                        f"{', '.join(sorted(FUNCTIONS)[:8])}... and {'variables' if self.variables else 'constants'}")

    def _binary(self, node: ast.BinOp) -> sympy.Expr:
        a, b = self._node(node.left), self._node(node.right)
        if isinstance(node.op, ast.Pow):
            if b.is_number and abs(b) > MAX_EXPONENT:
                raise MathError(f"exponents above {MAX_EXPONENT} are too large")
            if a.is_Rational and b.is_number and abs(b) * len(str(abs(a.p))) > MAX_DIGITS:
                raise MathError(f"the result would have more than {MAX_DIGITS} digits")
            return a ** b
        operations = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                      ast.Div: lambda: a / b, ast.FloorDiv: lambda: sympy.floor(a / b), ast.Mod: lambda: sympy.Mod(a, b)}
        if type(node.op) not in operations:
            raise MathError(f"cannot use the operator in {ast.unparse(node)!r}")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise MathError("division by zero")
        return operations[type(node.op)]()

    def _name(self, name: str) -> sympy.Expr:
        if name in CONSTANTS:
            return CONSTANTS[name]
        if self.units and (unit := unit_of(name)) is not None:
            return unit
        if self.variables and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,15}", name):
            return sympy.Symbol(name)
        raise MathError(f"unknown name {name!r}")


def unit_of(name: str) -> sympy.Expr | None:
    """A unit by its symbol (km) or its name (kilometer, kilometers); None if it is none."""
    if name in EXTRA_UNITS:
        return EXTRA_UNITS[name]
    unit = getattr(units, name, None)
    return unit if isinstance(unit, units.Quantity) else None


def _python(text: str) -> str:
    """Maths as people write it, in Python's syntax: ^ for powers, × ÷ and full-width signs,
    thousands separators, percentages, and 2x for 2*x."""
    text = text.translate(str.maketrans({"^": "**", "×": "*", "÷": "/", "−": "-", "（": "(", "）": ")",
                                         "＋": "+", "－": "-", "＊": "*", "／": "/", "，": ","}))
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"%(?!\s*[\d(A-Za-z])", "/100", text)  # 12.5% is a percentage; 7 % 3 stays modulo
    # a number that starts a word (not log10's 10), then a name or a bracket; not 1e5
    return re.sub(r"\b(\d+(?:\.\d*)?)\s*(?=[A-Za-z(π])(?![eE][+-]?\d)", r"\1*", text)
