//! The methods, by their names on the wire, and their families.

use serde::Serialize;

/// The family a method belongs to; it decides the shape of the result.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Roots,
    LinearSystems,
    Integrals,
    Odes,
    Interpolation,
}

/// A numeric method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Bisection,
    RegulaFalsi,
    Brent,
    Secant,
    Newton,
    FixedPoint,
    Gauss,
    Lu,
    Jacobi,
    GaussSeidel,
    Trapezoid,
    Simpson,
    Romberg,
    GaussLegendre,
    Euler,
    Heun,
    Rk4,
    Rk45,
    Lagrange,
    NewtonDivided,
    CubicSpline,
}

impl Method {
    /// Every method, grouped by family, in catalogue order.
    pub const ALL: [Method; 21] = [
        Method::Bisection,
        Method::RegulaFalsi,
        Method::Brent,
        Method::Secant,
        Method::Newton,
        Method::FixedPoint,
        Method::Gauss,
        Method::Lu,
        Method::Jacobi,
        Method::GaussSeidel,
        Method::Trapezoid,
        Method::Simpson,
        Method::Romberg,
        Method::GaussLegendre,
        Method::Euler,
        Method::Heun,
        Method::Rk4,
        Method::Rk45,
        Method::Lagrange,
        Method::NewtonDivided,
        Method::CubicSpline,
    ];

    /// The name in `problem.method`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Bisection => "bisection",
            Method::RegulaFalsi => "regula_falsi",
            Method::Brent => "brent",
            Method::Secant => "secant",
            Method::Newton => "newton",
            Method::FixedPoint => "fixed_point",
            Method::Gauss => "gauss",
            Method::Lu => "lu",
            Method::Jacobi => "jacobi",
            Method::GaussSeidel => "gauss_seidel",
            Method::Trapezoid => "trapezoid",
            Method::Simpson => "simpson",
            Method::Romberg => "romberg",
            Method::GaussLegendre => "gauss_legendre",
            Method::Euler => "euler",
            Method::Heun => "heun",
            Method::Rk4 => "rk4",
            Method::Rk45 => "rk45",
            Method::Lagrange => "lagrange",
            Method::NewtonDivided => "newton_divided",
            Method::CubicSpline => "cubic_spline",
        }
    }

    /// The method called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn family(self) -> Family {
        match self {
            Method::Bisection
            | Method::RegulaFalsi
            | Method::Brent
            | Method::Secant
            | Method::Newton
            | Method::FixedPoint => Family::Roots,
            Method::Gauss | Method::Lu | Method::Jacobi | Method::GaussSeidel => {
                Family::LinearSystems
            }
            Method::Trapezoid | Method::Simpson | Method::Romberg | Method::GaussLegendre => {
                Family::Integrals
            }
            Method::Euler | Method::Heun | Method::Rk4 | Method::Rk45 => Family::Odes,
            Method::Lagrange | Method::NewtonDivided | Method::CubicSpline => Family::Interpolation,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
