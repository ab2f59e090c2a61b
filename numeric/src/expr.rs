//! Expressions such as `"x^3 + 4*x^2 - 10"`.
//!
//! A strict front end (tokenizer and precedence-climbing parser) checks the text, reports every
//! mistake with its 1-based character position, resolves names (functions, the constants `pi`
//! and `e`, the variables a problem allows), and writes the expression back fully
//! parenthesized. [`exmex`] compiles that text once into a flat expression that evaluates fast.
//! Symbolic derivatives (Newton's method without `df`) are taken on the syntax tree here, with
//! light simplification, and compiled the same way: exmex's own `partial` needs about a
//! mebibyte of stack even for a cubic, too much for the small stacks of async worker threads.
//!
//! The front end exists because exmex's own grammar differs from school mathematics in ways a
//! student would not expect: it binds unary minus tighter than `^` (`-x^2` would be `(-x)^2`),
//! has no scientific notation (`1e-3`) and reports errors without positions. Here, as in
//! Python, `-x^2 = -(x^2)`, `^` is right-associative (`2^3^2 = 2^9`) and `**` means `^`.

use std::fmt::Write as _;

use exmex::prelude::*;

/// Longest expression accepted, in characters.
pub const MAX_EXPRESSION_CHARS: usize = 1_000;
/// Deepest nesting of parentheses, unary signs and powers accepted.
const MAX_NESTING: usize = 64;
/// Most variables one expression can be evaluated with (`t` and 32 unknowns of an ODE system).
pub const MAX_VARIABLES: usize = 33;

/// The functions an expression may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Function {
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Exp,
    Ln,
    Log10,
    Sqrt,
    Abs,
}

impl Function {
    const ALL: [Function; 14] = [
        Function::Sin,
        Function::Cos,
        Function::Tan,
        Function::Asin,
        Function::Acos,
        Function::Atan,
        Function::Sinh,
        Function::Cosh,
        Function::Tanh,
        Function::Exp,
        Function::Ln,
        Function::Log10,
        Function::Sqrt,
        Function::Abs,
    ];

    /// The name in expressions; also exmex's name of the same function.
    fn name(self) -> &'static str {
        match self {
            Function::Sin => "sin",
            Function::Cos => "cos",
            Function::Tan => "tan",
            Function::Asin => "asin",
            Function::Acos => "acos",
            Function::Atan => "atan",
            Function::Sinh => "sinh",
            Function::Cosh => "cosh",
            Function::Tanh => "tanh",
            Function::Exp => "exp",
            Function::Ln => "ln",
            Function::Log10 => "log10",
            Function::Sqrt => "sqrt",
            Function::Abs => "abs",
        }
    }

    fn from_name(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// The names of the functions expressions may call, for help texts.
pub fn function_names() -> String {
    Function::ALL.map(Function::name).join(", ")
}

/// Why an expression was rejected; the message includes the position where it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpressionError {
    pub message: String,
}

impl ExpressionError {
    fn at(position: usize, message: impl std::fmt::Display) -> Self {
        ExpressionError {
            message: format!("{message} at position {position}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Token<'a> {
    Number(f64),
    Name(&'a str),
    Plus,
    Minus,
    Star,
    Slash,
    Caret,
    Open,
    Close,
    End,
}

impl Token<'_> {
    fn describe(&self) -> String {
        match self {
            Token::Number(value) => format!("number {value}"),
            Token::Name(name) => format!("'{name}'"),
            Token::Plus => "'+'".into(),
            Token::Minus => "'-'".into(),
            Token::Star => "'*'".into(),
            Token::Slash => "'/'".into(),
            Token::Caret => "'^'".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::End => "the end of the expression".into(),
        }
    }
}

/// A token and the 1-based character position where it starts.
#[derive(Clone, Copy, Debug)]
struct Lexeme<'a> {
    token: Token<'a>,
    position: usize,
}

fn tokenize(text: &str) -> Result<Vec<Lexeme<'_>>, ExpressionError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let char_at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let mut lexemes = Vec::new();
    let mut i = 0;
    while let Some(c) = char_at(i) {
        let position = i + 1;
        let token = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '0'..='9' | '.' => {
                let start = i;
                while char_at(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
                if char_at(i) == Some('.') {
                    i += 1;
                    while char_at(i).is_some_and(|c| c.is_ascii_digit()) {
                        i += 1;
                    }
                }
                if matches!(char_at(i), Some('e' | 'E')) {
                    let sign = usize::from(matches!(char_at(i + 1), Some('+' | '-')));
                    if char_at(i + 1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                        i += 1 + sign;
                        while char_at(i).is_some_and(|c| c.is_ascii_digit()) {
                            i += 1;
                        }
                    }
                }
                let literal = &text[byte_at(start)..byte_at(i)];
                let value: f64 = literal.parse().map_err(|_| {
                    ExpressionError::at(position, format!("malformed number '{literal}'"))
                })?;
                if !value.is_finite() {
                    return Err(ExpressionError::at(
                        position,
                        format!("number '{literal}' is out of range"),
                    ));
                }
                lexemes.push(Lexeme {
                    token: Token::Number(value),
                    position,
                });
                continue;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while char_at(i).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    i += 1;
                }
                lexemes.push(Lexeme {
                    token: Token::Name(&text[byte_at(start)..byte_at(i)]),
                    position,
                });
                continue;
            }
            '+' => Token::Plus,
            '-' => Token::Minus,
            '*' if char_at(i + 1) == Some('*') => {
                i += 1;
                Token::Caret
            }
            '*' => Token::Star,
            '/' => Token::Slash,
            '^' => Token::Caret,
            '(' => Token::Open,
            ')' => Token::Close,
            other => {
                return Err(ExpressionError::at(
                    position,
                    format!("unexpected character '{other}'"),
                ));
            }
        };
        lexemes.push(Lexeme { token, position });
        i += 1;
    }
    lexemes.push(Lexeme {
        token: Token::End,
        position: chars.len() + 1,
    });
    Ok(lexemes)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinaryOp {
    Add,
    Subtract,
    Multiply,
    Divide,
    Power,
}

impl BinaryOp {
    fn symbol(self) -> char {
        match self {
            BinaryOp::Add => '+',
            BinaryOp::Subtract => '-',
            BinaryOp::Multiply => '*',
            BinaryOp::Divide => '/',
            BinaryOp::Power => '^',
        }
    }
}

/// The syntax tree of a checked expression.
#[derive(Clone, Debug, PartialEq)]
enum Node {
    Number(f64),
    Variable(usize),
    Negate(Box<Node>),
    Binary(BinaryOp, Box<Node>, Box<Node>),
    Call(Function, Box<Node>),
}

struct Parser<'a, 'v> {
    lexemes: Vec<Lexeme<'a>>,
    next: usize,
    variables: &'v [&'v str],
    depth: usize,
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Lexeme<'a> {
        self.lexemes[self.next]
    }

    fn advance(&mut self) -> Lexeme<'a> {
        let lexeme = self.lexemes[self.next];
        if lexeme.token != Token::End {
            self.next += 1;
        }
        lexeme
    }

    fn nested<T>(
        &mut self,
        position: usize,
        parse: impl FnOnce(&mut Self) -> Result<T, ExpressionError>,
    ) -> Result<T, ExpressionError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ExpressionError::at(
                position,
                format!("expression is nested more than {MAX_NESTING} levels deep"),
            ));
        }
        let result = parse(self);
        self.depth -= 1;
        result
    }

    /// sum := product (('+' | '-') product)*
    fn sum(&mut self) -> Result<Node, ExpressionError> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek().token {
                Token::Plus => BinaryOp::Add,
                Token::Minus => BinaryOp::Subtract,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.product()?;
            left = Node::Binary(op, Box::new(left), Box::new(right));
        }
    }

    /// product := signed (('*' | '/') signed)*
    fn product(&mut self) -> Result<Node, ExpressionError> {
        let mut left = self.signed()?;
        loop {
            let op = match self.peek().token {
                Token::Star => BinaryOp::Multiply,
                Token::Slash => BinaryOp::Divide,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.signed()?;
            left = Node::Binary(op, Box::new(left), Box::new(right));
        }
    }

    /// signed := ('-' | '+') signed | power
    fn signed(&mut self) -> Result<Node, ExpressionError> {
        let lexeme = self.peek();
        match lexeme.token {
            Token::Minus => {
                self.advance();
                let operand = self.nested(lexeme.position, Self::signed)?;
                Ok(Node::Negate(Box::new(operand)))
            }
            Token::Plus => {
                self.advance();
                self.nested(lexeme.position, Self::signed)
            }
            _ => self.power(),
        }
    }

    /// power := primary ('^' signed)?   (right-associative; the exponent may carry a sign)
    fn power(&mut self) -> Result<Node, ExpressionError> {
        let base = self.primary()?;
        let lexeme = self.peek();
        if lexeme.token != Token::Caret {
            return Ok(base);
        }
        self.advance();
        let exponent = self.nested(lexeme.position, Self::signed)?;
        Ok(Node::Binary(
            BinaryOp::Power,
            Box::new(base),
            Box::new(exponent),
        ))
    }

    /// primary := number | constant | variable | function '(' sum ')' | '(' sum ')'
    fn primary(&mut self) -> Result<Node, ExpressionError> {
        let lexeme = self.advance();
        let node = match lexeme.token {
            Token::Number(value) => Node::Number(value),
            Token::Open => {
                let inner = self.nested(lexeme.position, Self::sum)?;
                self.close(lexeme.position)?;
                inner
            }
            Token::Name(name) => self.name(name, lexeme.position)?,
            Token::End => {
                return Err(ExpressionError::at(
                    lexeme.position,
                    "expression ends where a number, a variable or '(' was expected",
                ));
            }
            other => {
                return Err(ExpressionError::at(
                    lexeme.position,
                    format!(
                        "unexpected {} where a number, a variable or '(' was expected",
                        other.describe()
                    ),
                ));
            }
        };
        // Implicit multiplication ("2x", "2(x+1)", "(x)(y)") is not allowed: say so precisely.
        let following = self.peek();
        if matches!(
            following.token,
            Token::Number(_) | Token::Name(_) | Token::Open
        ) {
            return Err(ExpressionError::at(
                following.position,
                format!(
                    "missing operator before {} (write '*' for a product)",
                    following.token.describe()
                ),
            ));
        }
        Ok(node)
    }

    fn close(&mut self, open_position: usize) -> Result<(), ExpressionError> {
        let lexeme = self.advance();
        match lexeme.token {
            Token::Close => Ok(()),
            Token::End => Err(ExpressionError::at(open_position, "'(' is never closed")),
            other => Err(ExpressionError::at(
                lexeme.position,
                format!("expected ')' or an operator but found {}", other.describe()),
            )),
        }
    }

    fn name(&mut self, name: &str, position: usize) -> Result<Node, ExpressionError> {
        if self.peek().token == Token::Open {
            let open = self.advance();
            let Some(function) = Function::from_name(name) else {
                let hint = if name == "log" {
                    "'log' is ambiguous: write ln(...) for the natural logarithm or log10(...)"
                        .to_string()
                } else {
                    format!(
                        "unknown function '{name}' (available: {})",
                        function_names()
                    )
                };
                return Err(ExpressionError::at(position, hint));
            };
            let argument = self.nested(open.position, Self::sum)?;
            self.close(open.position)?;
            return Ok(Node::Call(function, Box::new(argument)));
        }
        match name {
            "pi" | "π" => return Ok(Node::Number(std::f64::consts::PI)),
            "e" => return Ok(Node::Number(std::f64::consts::E)),
            _ => {}
        }
        if let Some(slot) = self.variables.iter().position(|v| *v == name) {
            return Ok(Node::Variable(slot));
        }
        if Function::from_name(name).is_some() || name == "log" {
            return Err(ExpressionError::at(
                position,
                format!("function '{name}' needs parentheses, e.g. {name}(x)"),
            ));
        }
        let allowed = if self.variables.is_empty() {
            "no variables are allowed here".to_string()
        } else {
            format!("this expression may use {}", self.variables.join(", "))
        };
        Err(ExpressionError::at(
            position,
            format!("unknown variable '{name}' ({allowed})"),
        ))
    }
}

/// Writes a node fully parenthesized in exmex's syntax, so exmex's own precedence rules never
/// come into play.
fn write_exmex(node: &Node, variables: &[&str], out: &mut String) {
    match node {
        // `Display` of f64 is plain decimal (exmex has no exponent syntax) and round-trips.
        Node::Number(value) => {
            let _ = write!(out, "{value}");
        }
        Node::Variable(slot) => out.push_str(variables[*slot]),
        Node::Negate(operand) => {
            out.push_str("(-(");
            write_exmex(operand, variables, out);
            out.push_str("))");
        }
        Node::Binary(op, left, right) => {
            out.push('(');
            write_exmex(left, variables, out);
            out.push(op.symbol());
            write_exmex(right, variables, out);
            out.push(')');
        }
        Node::Call(function, argument) => {
            out.push_str(function.name());
            out.push('(');
            write_exmex(argument, variables, out);
            out.push(')');
        }
    }
}

/// A checked, compiled expression, evaluated with the values of its problem's variables.
#[derive(Clone, Debug)]
pub struct Expression {
    source: String,
    tree: Node,
    /// Boxed: exmex keeps its nodes inline (about 20 KB), which would make every move of a
    /// problem copy that much on the stack.
    compiled: Box<FlatEx<f64>>,
    /// For each of exmex's variables (in exmex's order), its index among the problem's variables.
    slots: Vec<usize>,
}

impl Expression {
    /// Checks and compiles `source`, which may use the names in `variables`.
    pub fn parse(source: &str, variables: &[&str]) -> Result<Expression, ExpressionError> {
        debug_assert!(variables.len() <= MAX_VARIABLES);
        let length = source.chars().count();
        if length > MAX_EXPRESSION_CHARS {
            return Err(ExpressionError {
                message: format!(
                    "expression has {length} characters; at most {MAX_EXPRESSION_CHARS} are allowed"
                ),
            });
        }
        if source.trim().is_empty() {
            return Err(ExpressionError {
                message: "expression is empty".into(),
            });
        }
        let mut parser = Parser {
            lexemes: tokenize(source)?,
            next: 0,
            variables,
            depth: 0,
        };
        let tree = parser.sum()?;
        let rest = parser.peek();
        if rest.token != Token::End {
            let message = if rest.token == Token::Close {
                "unmatched ')'".to_string()
            } else {
                format!("unexpected {}", rest.token.describe())
            };
            return Err(ExpressionError::at(rest.position, message));
        }
        Self::compile(source.to_string(), tree, variables)
    }

    fn compile(
        source: String,
        tree: Node,
        variables: &[&str],
    ) -> Result<Expression, ExpressionError> {
        let mut text = String::with_capacity(source.len() * 2);
        write_exmex(&tree, variables, &mut text);
        let compiled = Box::new(FlatEx::<f64>::parse(&text).map_err(|err| ExpressionError {
            message: format!("expression could not be compiled: {err}"),
        })?);
        let slots = compiled
            .var_names()
            .iter()
            .map(|name| {
                let bare = name.trim_start_matches('{').trim_end_matches('}');
                variables
                    .iter()
                    .position(|v| *v == bare)
                    .ok_or_else(|| ExpressionError {
                        message: format!("expression refers to an unexpected variable '{bare}'"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expression {
            source,
            tree,
            compiled,
            slots,
        })
    }

    /// The text as written by the user (for a derivative, fully parenthesized).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with `values[i]` the value of the problem's i-th variable. A value that cannot
    /// be computed is NaN.
    #[inline]
    pub fn eval(&self, values: &[f64]) -> f64 {
        let mut gathered = [0.0; MAX_VARIABLES];
        for (value, &slot) in gathered.iter_mut().zip(&self.slots) {
            *value = values[slot];
        }
        self.compiled
            .eval(&gathered[..self.slots.len()])
            .unwrap_or(f64::NAN)
    }

    /// Evaluates like [`Expression::eval`], but a NaN or an infinity is an error saying what was
    /// evaluated where: `"{name} is NaN at {at}"`.
    #[inline]
    pub fn eval_finite(
        &self,
        name: &str,
        values: &[f64],
        at: impl FnOnce() -> String,
    ) -> Result<f64, String> {
        let value = self.eval(values);
        if value.is_finite() {
            Ok(value)
        } else {
            Err(format!("{name} is {value} at {}", at()))
        }
    }

    /// The symbolic derivative with respect to the problem variable `variables[slot]`.
    pub fn derivative(&self, variables: &[&str], slot: usize) -> Result<Expression, String> {
        let tree = differentiate(&self.tree, slot);
        let mut source = String::new();
        write_exmex(&tree, variables, &mut source);
        if source.len() > MAX_DERIVATIVE_CHARS {
            return Err(format!(
                "the symbolic derivative has {} characters, more than {MAX_DERIVATIVE_CHARS}",
                source.len()
            ));
        }
        Expression::compile(source, tree, variables).map_err(|e| e.message)
    }
}

/// Longest symbolic derivative accepted, in characters of its parenthesized text.
const MAX_DERIVATIVE_CHARS: usize = 100_000;

/// Whether `node` depends on the variable `slot`.
fn depends_on(node: &Node, slot: usize) -> bool {
    match node {
        Node::Number(_) => false,
        Node::Variable(s) => *s == slot,
        Node::Negate(u) | Node::Call(_, u) => depends_on(u, slot),
        Node::Binary(_, u, v) => depends_on(u, slot) || depends_on(v, slot),
    }
}

/// Builders that fold numbers and drop neutral elements, so derivatives stay readable and small.
fn number(value: f64) -> Node {
    Node::Number(value)
}

fn negate(u: Node) -> Node {
    match u {
        Node::Number(value) => number(-value),
        Node::Negate(inner) => *inner,
        u => Node::Negate(Box::new(u)),
    }
}

fn binary(op: BinaryOp, u: Node, v: Node) -> Node {
    use BinaryOp::*;
    match (op, &u, &v) {
        (_, Node::Number(a), Node::Number(b)) if op != Power => number(match op {
            Add => a + b,
            Subtract => a - b,
            Multiply => a * b,
            _ => a / b,
        }),
        (Add, Node::Number(z), _) if *z == 0.0 => v,
        (Add | Subtract, _, Node::Number(z)) if *z == 0.0 => u,
        (Subtract, Node::Number(z), _) if *z == 0.0 => negate(v),
        (Multiply, Node::Number(z), _) | (Multiply, _, Node::Number(z)) if *z == 0.0 => number(0.0),
        (Divide, Node::Number(z), _) if *z == 0.0 => number(0.0),
        (Multiply, Node::Number(one), _) if *one == 1.0 => v,
        (Multiply | Divide | Power, _, Node::Number(one)) if *one == 1.0 => u,
        (Multiply, Node::Number(minus_one), _) if *minus_one == -1.0 => negate(v),
        (Power, _, Node::Number(z)) if *z == 0.0 => number(1.0),
        _ => Node::Binary(op, Box::new(u), Box::new(v)),
    }
}

fn call(function: Function, u: Node) -> Node {
    Node::Call(function, Box::new(u))
}

/// d(node)/d(variable `slot`), by the sum, product, quotient, power and chain rules.
fn differentiate(node: &Node, slot: usize) -> Node {
    use BinaryOp::*;
    if !depends_on(node, slot) {
        return number(0.0);
    }
    match node {
        Node::Number(_) => number(0.0),
        Node::Variable(_) => number(1.0),
        Node::Negate(u) => negate(differentiate(u, slot)),
        Node::Binary(op, u, v) => {
            let (u, v) = (u.as_ref().clone(), v.as_ref().clone());
            let (du, dv) = (differentiate(&u, slot), differentiate(&v, slot));
            match op {
                Add | Subtract => binary(*op, du, dv),
                Multiply => binary(
                    Add,
                    binary(Multiply, du, v.clone()),
                    binary(Multiply, u, dv),
                ),
                Divide => binary(
                    Divide,
                    binary(
                        Subtract,
                        binary(Multiply, du, v.clone()),
                        binary(Multiply, u, dv),
                    ),
                    binary(Power, v, number(2.0)),
                ),
                Power if !depends_on(&v, slot) => {
                    // d(u^c) = c·u^(c−1)·u'
                    let lowered = binary(Power, u, binary(Subtract, v.clone(), number(1.0)));
                    binary(Multiply, binary(Multiply, v, lowered), du)
                }
                Power => {
                    // d(u^v) = u^v·(v'·ln(u) + v·u'/u)
                    let power = binary(Power, u.clone(), v.clone());
                    let log_term = binary(Multiply, dv, call(Function::Ln, u.clone()));
                    let base_term = binary(Divide, binary(Multiply, v, du), u);
                    binary(Multiply, power, binary(Add, log_term, base_term))
                }
            }
        }
        Node::Call(function, u) => {
            let u = u.as_ref().clone();
            let du = differentiate(&u, slot);
            let square = |n: Node| binary(Power, n, number(2.0));
            let outer = match function {
                Function::Sin => call(Function::Cos, u),
                Function::Cos => negate(call(Function::Sin, u)),
                Function::Tan => binary(Divide, number(1.0), square(call(Function::Cos, u))),
                Function::Asin => binary(
                    Divide,
                    number(1.0),
                    call(Function::Sqrt, binary(Subtract, number(1.0), square(u))),
                ),
                Function::Acos => negate(binary(
                    Divide,
                    number(1.0),
                    call(Function::Sqrt, binary(Subtract, number(1.0), square(u))),
                )),
                Function::Atan => binary(Divide, number(1.0), binary(Add, number(1.0), square(u))),
                Function::Sinh => call(Function::Cosh, u),
                Function::Cosh => call(Function::Sinh, u),
                Function::Tanh => binary(Divide, number(1.0), square(call(Function::Cosh, u))),
                Function::Exp => call(Function::Exp, u),
                Function::Ln => binary(Divide, number(1.0), u),
                Function::Log10 => binary(
                    Divide,
                    number(1.0),
                    binary(Multiply, u, number(std::f64::consts::LN_10)),
                ),
                Function::Sqrt => binary(Divide, number(0.5), call(Function::Sqrt, u)),
                // The sign of u (NaN at u = 0, where |u| has no derivative).
                Function::Abs => binary(Divide, u.clone(), call(Function::Abs, u)),
            };
            binary(Multiply, outer, du)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval1(source: &str, x: f64) -> f64 {
        Expression::parse(source, &["x"]).unwrap().eval(&[x])
    }

    fn error(source: &str, variables: &[&str]) -> String {
        Expression::parse(source, variables).unwrap_err().message
    }

    #[test]
    fn precedence_follows_school_mathematics() {
        assert_eq!(eval1("-x^2", 3.0), -9.0);
        assert_eq!(eval1("(-x)^2", 3.0), 9.0);
        assert_eq!(eval1("2^3^2", 0.0), 512.0);
        assert_eq!(eval1("2^-x", 3.0), 0.125);
        assert_eq!(eval1("2*-x", 3.0), -6.0);
        assert_eq!(eval1("x--2", 3.0), 5.0);
        assert_eq!(eval1("8/2/2", 0.0), 2.0);
        assert_eq!(eval1("10-2-3", 0.0), 5.0);
        assert_eq!(eval1("x**2 + 1", 3.0), 10.0);
        assert!((eval1("exp(-x^2)", 3.0) - (-9.0f64).exp()).abs() < 1e-18);
        assert_eq!(eval1("x^3 + 4*x^2 - 10", 1.5), 2.375);
    }

    #[test]
    fn functions_constants_and_scientific_notation() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * b.abs().max(1.0);
        assert!(close(eval1("sin(pi/2) + cos(0) + tan(0)", 0.0), 2.0));
        assert!(close(
            eval1("ln(e) + log10(1000) + sqrt(16) + abs(-2)", 0.0),
            10.0
        ));
        assert!(close(eval1("exp(1) - e", 0.0), 0.0));
        assert!(close(eval1("1.5e-3 * x + 2E2 + .5", 1000.0), 202.0));
        assert!(close(
            eval1(
                "asin(1) + acos(1) + atan(0) + sinh(0) + cosh(0) + tanh(0)",
                0.0
            ),
            1.0 + std::f64::consts::FRAC_PI_2
        ));
        assert!(eval1("sqrt(x)", -1.0).is_nan());
        assert_eq!(eval1("1/x", 0.0), f64::INFINITY);
    }

    #[test]
    fn variables_map_to_problem_order_whatever_exmex_sorts() {
        let variables = ["t", "y1", "y2", "y10"];
        let names: Vec<&str> = variables.to_vec();
        let e = Expression::parse("y10 - 2*y2 + 3*y1 + 1000*t", &names).unwrap();
        assert_eq!(
            e.eval(&[1.0, 10.0, 100.0, 1.0]),
            1.0 - 200.0 + 30.0 + 1000.0
        );
        let constant = Expression::parse("2*pi", &names).unwrap();
        assert_eq!(constant.eval(&[0.0; 4]), std::f64::consts::TAU);
    }

    #[test]
    fn errors_name_the_position() {
        assert_eq!(
            error("x +* 2", &["x"]),
            "unexpected '*' where a number, a variable or '(' was expected at position 4"
        );
        assert_eq!(error("(x + 1", &["x"]), "'(' is never closed at position 1");
        assert_eq!(error("x + 1)", &["x"]), "unmatched ')' at position 6");
        assert_eq!(
            error("2x", &["x"]),
            "missing operator before 'x' (write '*' for a product) at position 2"
        );
        assert_eq!(
            error("x + ", &["x"]),
            "expression ends where a number, a variable or '(' was expected at position 5"
        );
        assert_eq!(
            error("x # 2", &["x"]),
            "unexpected character '#' at position 3"
        );
        assert_eq!(
            error("1e999", &["x"]),
            "number '1e999' is out of range at position 1"
        );
        assert_eq!(
            error("sin x", &["x"]),
            "function 'sin' needs parentheses, e.g. sin(x) at position 1"
        );
        assert!(error("foo(x)", &["x"]).starts_with("unknown function 'foo' (available: sin, cos"));
        assert!(error("log(x)", &["x"]).starts_with("'log' is ambiguous"));
        assert_eq!(
            error("x + z", &["x"]),
            "unknown variable 'z' (this expression may use x) at position 5"
        );
        assert_eq!(
            error("t*y", &["t", "y1", "y2"]),
            "unknown variable 'y' (this expression may use t, y1, y2) at position 3"
        );
        assert_eq!(error("   ", &["x"]), "expression is empty");
        assert!(error(&"x+".repeat(600), &["x"]).contains("at most 1000"));
        assert!(
            error(&format!("{}x{}", "(".repeat(100), ")".repeat(100)), &["x"])
                .contains("nested more than 64")
        );
    }

    /// Compares the symbolic derivative with a central difference at a few points.
    #[test]
    fn symbolic_derivatives_match_finite_differences() {
        let cases = [
            "x^3 + 4*x^2 - 10",
            "sin(x)*cos(2*x) - tan(x/3)",
            "asin(x/2) + acos(x/3) + atan(x^2)",
            "sinh(x) - cosh(x/2) + tanh(3*x)",
            "exp(-x^2)/(1 + x^2)",
            "ln(x + 2) + log10(x^2 + 1) + sqrt(x + 1.5)",
            "x^x + 2^x + x^-2.5",
            "-x^2 + (2*x - 1)^3 / (x + 4)",
            "abs(x - 3)*x",
        ];
        for source in cases {
            let f = Expression::parse(source, &["x"]).unwrap();
            let df = f.derivative(&["x"], 0).unwrap();
            for x in [0.3, 0.7, 1.1] {
                let h = 1e-6;
                let numeric = (f.eval(&[x + h]) - f.eval(&[x - h])) / (2.0 * h);
                let symbolic = df.eval(&[x]);
                assert!(
                    (numeric - symbolic).abs() <= 1e-6 * symbolic.abs().max(1.0),
                    "{source} at {x}: symbolic {symbolic} ({}) vs numeric {numeric}",
                    df.source()
                );
            }
        }
    }

    #[test]
    fn derivatives_are_simplified() {
        let variables = ["x"];
        let derivative = |source: &str| {
            Expression::parse(source, &variables)
                .unwrap()
                .derivative(&variables, 0)
                .unwrap()
        };
        assert_eq!(derivative("3*x + 2").source(), "3");
        assert_eq!(derivative("x^3").source(), "(3*(x^2))");
        assert_eq!(derivative("sin(x)").source(), "cos(x)");
        assert_eq!(derivative("5").source(), "0");
        let long = vec!["x"; 330].join("+");
        assert_eq!(derivative(&long).eval(&[0.0]), 330.0);
    }

    #[test]
    fn symbolic_derivative() {
        let variables = ["x"];
        let f = Expression::parse("x^3 + 4*x^2 - 10", &variables).unwrap();
        let df = f.derivative(&variables, 0).unwrap();
        assert_eq!(df.eval(&[2.0]), 3.0 * 4.0 + 8.0 * 2.0);
        let constant = Expression::parse("5", &variables).unwrap();
        assert_eq!(
            constant.derivative(&variables, 0).unwrap().eval(&[1.0]),
            0.0
        );
        let with_abs = Expression::parse("abs(x) - 1", &variables)
            .unwrap()
            .derivative(&variables, 0)
            .unwrap();
        assert_eq!((with_abs.eval(&[-3.0]), with_abs.eval(&[2.0])), (-1.0, 1.0));
        assert!(with_abs.eval(&[0.0]).is_nan());
        let mixed = Expression::parse("t*y^2", &["t", "y"]).unwrap();
        assert_eq!(
            mixed.derivative(&["t", "y"], 1).unwrap().eval(&[3.0, 2.0]),
            12.0
        );
    }
}
