//! The catalogue of methods: parameters (the single source of truth for validation), help texts
//! and a worked example per method, served as `GET /api/v1/numeric/methods`.

use serde::Serialize;
use serde_json::{Value, json};

use crate::method::{Family, Method};

/// The kind of value a parameter takes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// A string such as `"x^3 + 4*x^2 - 10"`.
    Expression,
    /// One expression, or an array of expressions for a system.
    ExpressionOrArray,
    /// A JSON number, or a string holding a constant expression such as `"pi/2"`.
    Number,
    /// A whole JSON number.
    Integer,
    /// An array of numbers.
    Vector,
    /// A number, or an array of numbers.
    NumberOrVector,
    /// An array of rows, each an array of numbers.
    Matrix,
}

/// One parameter of a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamType,
    pub required: bool,
    pub meaning: &'static str,
}

/// A parameter as the catalogue describes it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamInfo {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub kind: ParamType,
    pub required: bool,
    /// Always `null`: optional parameters have no single default value; `meaning` says what
    /// happens when they are left out.
    pub default: Option<Value>,
    pub meaning: &'static str,
}

/// A method as the catalogue describes it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MethodInfo {
    pub name: &'static str,
    pub family: Family,
    pub title: &'static str,
    pub description: &'static str,
    pub parameters: Vec<ParamInfo>,
    /// A complete problem statement that can be submitted as it is.
    pub example: Value,
}

const fn required(name: &'static str, kind: ParamType, meaning: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required: true,
        meaning,
    }
}

const fn optional(name: &'static str, kind: ParamType, meaning: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required: false,
        meaning,
    }
}

use ParamType::{Expression, ExpressionOrArray, Integer, Matrix, Number, NumberOrVector, Vector};

const F_OF_X: ParamSpec = required(
    "f",
    Expression,
    "f(x), in the variable x, e.g. \"x^3 + 4*x^2 - 10\". Operators + - * / ^ (or **), functions sin, cos, tan, asin, acos, atan, sinh, cosh, tanh, exp, ln, log10, sqrt, abs, constants pi and e, numbers such as 2.5 or 1e-3",
);
const BRACKET_A: ParamSpec = required(
    "a",
    Number,
    "left end of the bracket; f(a) and f(b) must differ in sign (or one be zero)",
);
const BRACKET_B: ParamSpec = required("b", Number, "right end of the bracket, greater than a");
const TOL: ParamSpec = required(
    "tol",
    Number,
    "tolerance, > 0: the iteration stops when its error measure is at most tol",
);
const MAX_ITER: ParamSpec = required(
    "max_iter",
    Integer,
    "most iterations, 1 to 1000000; reaching it ends the job as did_not_converge",
);
const X0: ParamSpec = required("x0", Number, "starting point");
const SECANT_X1: ParamSpec = required("x1", Number, "second starting point, different from x0");
const NEWTON_DF: ParamSpec = optional(
    "df",
    Expression,
    "f'(x), in x; when left out, the symbolic derivative of f is used",
);
const FIXED_POINT_G: ParamSpec = required(
    "g",
    Expression,
    "g(x), in x: the iteration is x = g(x), e.g. \"cos(x)\"",
);
const MATRIX_A: ParamSpec = required(
    "A",
    Matrix,
    "the square, non-singular coefficient matrix, as an array of rows (at most 100 x 100)",
);
const RHS_B: ParamSpec = required("b", Vector, "the right-hand side, one number per row of A");
const LINEAR_X0: ParamSpec = optional(
    "x0",
    Vector,
    "initial guess, one number per unknown; the zero vector when left out",
);
const INTEGRAND: ParamSpec = required(
    "f",
    Expression,
    "the integrand f(x), in x, e.g. \"exp(-x^2)\"",
);
const LOWER: ParamSpec = required(
    "a",
    Number,
    "lower limit (a number or a constant such as \"pi/2\")",
);
const UPPER: ParamSpec = required("b", Number, "upper limit, greater than a");
const TRAPEZOID_N: ParamSpec = required("n", Integer, "number of subintervals, 1 to 1000000");
const SIMPSON_N: ParamSpec = required("n", Integer, "number of subintervals, even, 2 to 1000000");
const GAUSS_LEGENDRE_N: ParamSpec =
    required("n", Integer, "number of Gauss–Legendre points, 1 to 100");
const ROMBERG_TOL: ParamSpec = required(
    "tol",
    Number,
    "tolerance, > 0, on the difference of successive extrapolations",
);
const ROMBERG_MAX_ITER: ParamSpec = required(
    "max_iter",
    Integer,
    "most halvings of the step, 1 to 25 (2^25 subintervals)",
);
const ODE_F: ParamSpec = required(
    "f",
    ExpressionOrArray,
    "the right-hand side: for one equation y' = f(t, y) an expression in t and y; for a system an array of expressions in t, y1, …, yn (at most 32)",
);
const T0: ParamSpec = required("t0", Number, "initial time");
const Y0: ParamSpec = required(
    "y0",
    NumberOrVector,
    "initial value: a number for one equation, an array (one per equation) for a system",
);
const T_END: ParamSpec = required("t_end", Number, "final time, greater than t0");
const STEP_H: ParamSpec = required(
    "h",
    Number,
    "step size, > 0; at most 100000 steps from t0 to t_end",
);
const RK45_TOL: ParamSpec = required(
    "tol",
    Number,
    "local error tolerance, > 0, used as both absolute and relative tolerance",
);
const XS: ParamSpec = required(
    "xs",
    Vector,
    "the nodes' x values, distinct (increasing for cubic_spline)",
);
const YS: ParamSpec = required("ys", Vector, "the nodes' y values, one per x");
const AT: ParamSpec = required(
    "at",
    NumberOrVector,
    "where to evaluate the interpolant: a number or an array (at most 10000)",
);

const BRACKETING: &[ParamSpec] = &[F_OF_X, BRACKET_A, BRACKET_B, TOL, MAX_ITER];
const SECANT: &[ParamSpec] = &[F_OF_X, X0, SECANT_X1, TOL, MAX_ITER];
const NEWTON: &[ParamSpec] = &[F_OF_X, NEWTON_DF, X0, TOL, MAX_ITER];
const FIXED_POINT: &[ParamSpec] = &[FIXED_POINT_G, X0, TOL, MAX_ITER];
const LINEAR_DIRECT: &[ParamSpec] = &[MATRIX_A, RHS_B];
const LINEAR_ITERATIVE: &[ParamSpec] = &[MATRIX_A, RHS_B, LINEAR_X0, TOL, MAX_ITER];
const TRAPEZOID: &[ParamSpec] = &[INTEGRAND, LOWER, UPPER, TRAPEZOID_N];
const SIMPSON: &[ParamSpec] = &[INTEGRAND, LOWER, UPPER, SIMPSON_N];
const ROMBERG: &[ParamSpec] = &[INTEGRAND, LOWER, UPPER, ROMBERG_TOL, ROMBERG_MAX_ITER];
const GAUSS_LEGENDRE: &[ParamSpec] = &[INTEGRAND, LOWER, UPPER, GAUSS_LEGENDRE_N];
const ODE_FIXED_STEP: &[ParamSpec] = &[ODE_F, T0, Y0, T_END, STEP_H];
const ODE_ADAPTIVE: &[ParamSpec] = &[ODE_F, T0, Y0, T_END, RK45_TOL];
const INTERPOLATION: &[ParamSpec] = &[XS, YS, AT];

/// The parameters of `method`, in the order they are checked and listed.
pub(crate) fn parameters(method: Method) -> &'static [ParamSpec] {
    match method {
        Method::Bisection | Method::RegulaFalsi | Method::Brent => BRACKETING,
        Method::Secant => SECANT,
        Method::Newton => NEWTON,
        Method::FixedPoint => FIXED_POINT,
        Method::Gauss | Method::Lu => LINEAR_DIRECT,
        Method::Jacobi | Method::GaussSeidel => LINEAR_ITERATIVE,
        Method::Trapezoid => TRAPEZOID,
        Method::Simpson => SIMPSON,
        Method::Romberg => ROMBERG,
        Method::GaussLegendre => GAUSS_LEGENDRE,
        Method::Euler | Method::Heun | Method::Rk4 => ODE_FIXED_STEP,
        Method::Rk45 => ODE_ADAPTIVE,
        Method::Lagrange | Method::NewtonDivided | Method::CubicSpline => INTERPOLATION,
    }
}

fn title_and_description(method: Method) -> (&'static str, &'static str) {
    match method {
        Method::Bisection => (
            "Bisection",
            "Halves a bracket [a, b] with a sign change until it is at most 2·tol wide.",
        ),
        Method::RegulaFalsi => (
            "Regula falsi (Illinois)",
            "False position on a bracket, with the Illinois modification that halves a stale end's value.",
        ),
        Method::Brent => (
            "Brent's method",
            "Inverse quadratic interpolation and secant steps safeguarded by bisection on a bracket.",
        ),
        Method::Secant => (
            "Secant method",
            "Newton's method with the derivative replaced by the slope through the last two points.",
        ),
        Method::Newton => (
            "Newton's method",
            "x ← x − f(x)/f'(x), with f' given or derived symbolically.",
        ),
        Method::FixedPoint => (
            "Fixed-point iteration",
            "x ← g(x) until successive values differ by at most tol.",
        ),
        Method::Gauss => (
            "Gaussian elimination",
            "Elimination with partial pivoting and back substitution.",
        ),
        Method::Lu => (
            "LU decomposition",
            "PA = LU with partial pivoting, then forward and back substitution.",
        ),
        Method::Jacobi => (
            "Jacobi iteration",
            "Each unknown from its row using the previous iterate; converges for diagonally dominant A.",
        ),
        Method::GaussSeidel => (
            "Gauss–Seidel iteration",
            "Like Jacobi but using each new value at once; converges for diagonally dominant A.",
        ),
        Method::Trapezoid => (
            "Composite trapezoid rule",
            "n equal subintervals; error O(h²), estimated by Richardson when n is even.",
        ),
        Method::Simpson => (
            "Composite Simpson's rule",
            "n (even) equal subintervals; error O(h⁴), estimated by Richardson when n is a multiple of 4.",
        ),
        Method::Romberg => (
            "Romberg integration",
            "Richardson extrapolation of trapezoid rules with halved steps.",
        ),
        Method::GaussLegendre => (
            "Gauss–Legendre quadrature",
            "n nodes and weights, exact for polynomials of degree 2n − 1.",
        ),
        Method::Euler => ("Euler's method", "Explicit first-order steps of size h."),
        Method::Heun => (
            "Heun's method",
            "Explicit trapezoidal (improved Euler) steps, second order.",
        ),
        Method::Rk4 => (
            "Classical Runge–Kutta",
            "The fourth-order Runge–Kutta method with steps of size h.",
        ),
        Method::Rk45 => (
            "Dormand–Prince RK45",
            "Adaptive fifth-order Runge–Kutta with an embedded fourth-order error estimate.",
        ),
        Method::Lagrange => (
            "Lagrange interpolation",
            "The interpolating polynomial, evaluated in the stable barycentric form.",
        ),
        Method::NewtonDivided => (
            "Newton divided differences",
            "The interpolating polynomial in Newton form, from the divided-difference table.",
        ),
        Method::CubicSpline => (
            "Natural cubic spline",
            "Piecewise cubics with continuous second derivative, zero at both ends.",
        ),
    }
}

/// A worked example for `method`, ready to submit.
pub fn example(method: Method) -> Value {
    let name = method.name();
    match method {
        Method::Bisection | Method::RegulaFalsi | Method::Brent => {
            json!({"method": name, "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100})
        }
        Method::Secant => {
            json!({"method": name, "f": "x^3 + 4*x^2 - 10", "x0": 1, "x1": 2, "tol": 1e-10, "max_iter": 100})
        }
        Method::Newton => {
            json!({"method": name, "f": "x^3 + 4*x^2 - 10", "df": "3*x^2 + 8*x", "x0": 1.5, "tol": 1e-10, "max_iter": 100})
        }
        Method::FixedPoint => {
            json!({"method": name, "g": "cos(x)", "x0": 1, "tol": 1e-10, "max_iter": 200})
        }
        Method::Gauss | Method::Lu => {
            json!({"method": name, "A": [[2, 1, -1], [-3, -1, 2], [-2, 1, 2]], "b": [8, -11, -3]})
        }
        Method::Jacobi | Method::GaussSeidel => json!({
            "method": name,
            "A": [[10, -1, 2, 0], [-1, 11, -1, 3], [2, -1, 10, -1], [0, 3, -1, 8]],
            "b": [6, 25, -11, 15],
            "tol": 1e-10,
            "max_iter": 500
        }),
        Method::Trapezoid => json!({"method": name, "f": "exp(-x^2)", "a": 0, "b": 1, "n": 100}),
        Method::Simpson => json!({"method": name, "f": "exp(-x^2)", "a": 0, "b": 1, "n": 100}),
        Method::Romberg => {
            json!({"method": name, "f": "exp(-x^2)", "a": 0, "b": 1, "tol": 1e-10, "max_iter": 20})
        }
        Method::GaussLegendre => json!({"method": name, "f": "exp(-x^2)", "a": 0, "b": 1, "n": 8}),
        Method::Euler | Method::Heun | Method::Rk4 => {
            json!({"method": name, "f": "y - t^2 + 1", "t0": 0, "y0": 0.5, "t_end": 2, "h": 0.1})
        }
        Method::Rk45 => {
            json!({"method": name, "f": ["y2", "-y1"], "t0": 0, "y0": [0, 1], "t_end": "2*pi", "tol": 1e-8})
        }
        Method::Lagrange | Method::NewtonDivided | Method::CubicSpline => {
            json!({"method": name, "xs": [0, 1, 2, 3], "ys": [1, 3, 2, 5], "at": [0.5, 1.5, 2.5]})
        }
    }
}

/// Every method with its family, parameters and a worked example.
pub fn methods() -> Vec<MethodInfo> {
    Method::ALL
        .into_iter()
        .map(|method| {
            let (title, description) = title_and_description(method);
            MethodInfo {
                name: method.name(),
                family: method.family(),
                title,
                description,
                parameters: parameters(method)
                    .iter()
                    .map(|spec| ParamInfo {
                        name: spec.name,
                        kind: spec.kind,
                        required: spec.required,
                        default: None,
                        meaning: spec.meaning,
                    })
                    .collect(),
                example: example(method),
            }
        })
        .collect()
}
