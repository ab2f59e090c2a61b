#!/usr/bin/env python3
"""Reference answers from SciPy/NumPy for cola-numeric's accuracy tests.

Reads a JSON battery on stdin:

    {"cases": [{"id": "...", "kind": "root" | "linear" | "integral" | "ode" | "interpolation", ...}]}

and writes {"versions": {...}, "results": {id: answer}} on stdout, where the answer is

    root           brentq on "bracket" (xtol 1e-15), or scipy.optimize.newton from "x0"
                   (with "fprime" when given): the root
    linear         numpy.linalg.solve(A, b): the solution vector
    integral       scipy.integrate.quad(f, a, b) with tight tolerances: the value
    ode            solve_ivp(method="RK45", rtol=1e-10, atol=1e-12): y at t_end (a list)
    interpolation  CubicSpline(bc_type="natural") for "cubic_spline", else
                   BarycentricInterpolator: the values at "at"

Expressions use cola's syntax (^ for powers, ln, log10, pi, e, ...); variables are x, or t and
y (one equation) or t, y1..yn (systems).
"""

import json
import sys

try:
    import numpy as np
    import scipy
    from scipy import integrate, interpolate, optimize
except ImportError as error:  # the Rust test turns this into a failure with the hint
    sys.stderr.write(
        f"scipy_oracle.py needs SciPy and NumPy ({error}); install them with: "
        "python3 -m pip install scipy numpy\n"
    )
    sys.exit(3)

FUNCTIONS = {
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "exp": np.exp,
    "ln": np.log,
    "log10": np.log10,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "pi": np.pi,
    "e": np.e,
}


def compile_expression(text, variables):
    """A Python function of `variables` computing cola expression `text`.

    Python's ** has the same precedence and associativity as cola's ^ (-x**2 == -(x**2)).
    """
    code = compile(text.replace("^", "**"), "<expression>", "eval")

    def evaluate(*values):
        scope = dict(FUNCTIONS)
        scope.update(zip(variables, values))
        return eval(code, {"__builtins__": {}}, scope)

    return evaluate


def root(case):
    f = compile_expression(case["f"], ["x"])
    if "bracket" in case:
        low, high = case["bracket"]
        return optimize.brentq(f, low, high, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    fprime = compile_expression(case["fprime"], ["x"]) if "fprime" in case else None
    return optimize.newton(f, case["x0"], fprime=fprime, tol=1e-15, maxiter=500)


def linear(case):
    return np.linalg.solve(np.array(case["A"], dtype=float), np.array(case["b"], dtype=float)).tolist()


def integral(case):
    f = compile_expression(case["f"], ["x"])
    value, _ = integrate.quad(f, case["a"], case["b"], epsabs=1e-14, epsrel=1e-14, limit=500)
    return value


def ode(case):
    equations = case["f"]
    if isinstance(equations, str):
        f = compile_expression(equations, ["t", "y"])

        def fun(t, y):
            return [f(t, y[0])]

        y0 = [case["y0"]]
    else:
        names = ["t"] + [f"y{i + 1}" for i in range(len(equations))]
        fs = [compile_expression(e, names) for e in equations]

        def fun(t, y):
            return [g(t, *y) for g in fs]

        y0 = case["y0"]
    solution = integrate.solve_ivp(
        fun, (case["t0"], case["t_end"]), y0, method="RK45", rtol=1e-10, atol=1e-12
    )
    if not solution.success:
        raise RuntimeError(f"solve_ivp failed: {solution.message}")
    return solution.y[:, -1].tolist()


def interpolation(case):
    xs = np.array(case["xs"], dtype=float)
    ys = np.array(case["ys"], dtype=float)
    if case["method"] == "cubic_spline":
        interpolant = interpolate.CubicSpline(xs, ys, bc_type="natural")
    else:
        interpolant = interpolate.BarycentricInterpolator(xs, ys)
    return np.asarray(interpolant(np.array(case["at"], dtype=float)), dtype=float).tolist()


SOLVERS = {"root": root, "linear": linear, "integral": integral, "ode": ode, "interpolation": interpolation}


def main():
    battery = json.load(sys.stdin)
    results = {}
    for case in battery["cases"]:
        try:
            results[case["id"]] = SOLVERS[case["kind"]](case)
        except Exception as error:
            sys.stderr.write(f"case {case['id']}: {type(error).__name__}: {error}\n")
            sys.exit(4)
    json.dump({"versions": {"numpy": np.__version__, "scipy": scipy.__version__}, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
