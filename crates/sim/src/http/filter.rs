//! The OData `$filter` subset MDE documents: `eq ne gt ge lt le and or`, parentheses,
//! `startswith(prop,'x')`, `prop/any(v: v eq 'x')`, single-quoted strings (`''` escapes a quote),
//! bare numbers, unquoted datetimes, `null`.
//!
//! Property names, operators and enum values match case-insensitively, as MDE's do in practice; string
//! comparisons ignore case too. Anything else is an error (the caller answers 400 `ODataError`). A
//! tokenizer and a recursive-descent parser with limits on length, nodes and depth: hostile input costs
//! at most a few thousand steps.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::records::{Machine, MachineVulnerability, Vulnerability};

pub(crate) const MAX_LEN: usize = 4096;
/// OData's default `MaxNodeCount`.
const MAX_NODES: usize = 100;
const MAX_DEPTH: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum PropType {
    Str,
    Enum(&'static [&'static str]),
    Int,
    Num,
    Date,
    StrCollection,
}

pub(crate) struct Schema {
    pub(crate) entity: &'static str,
    pub(crate) props: &'static [(&'static str, PropType)],
}

/// A property value of the record being tested.
pub(crate) enum Value<'a> {
    Str(Option<&'a str>),
    Int(Option<i64>),
    Num(Option<f64>),
    Date(Option<DateTime<Utc>>),
    Coll(&'a [String]),
}

pub(crate) trait Filterable {
    /// The value of `schema.props[prop]`.
    fn value(&self, prop: usize) -> Value<'_>;
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Str(String),
    Int(i64),
    Num(f64),
    Date(DateTime<Utc>),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Prop(usize),
    /// The range variable of a lambda (`t` in `machineTags/any(t: t eq 'x')`).
    Elem,
}

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp {
        target: Target,
        op: Op,
        lit: Lit,
    },
    StartsWith {
        target: Target,
        prefix: String,
    },
    Any {
        prop: usize,
        body: Option<Box<Expr>>,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FilterError(pub(crate) String);

fn err<T>(msg: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(msg.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Num(f64),
    Date(DateTime<Utc>),
    LParen,
    RParen,
    Comma,
    Colon,
    Slash,
}

fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let bare = s.strip_suffix('Z').unwrap_or(s);
    if let Ok(d) = NaiveDate::parse_from_str(bare, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(bare, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

fn tokenize(input: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let chars: Vec<(usize, char)> = input.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        match c {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '(' | ')' | ',' | ':' | '/' => {
                out.push((
                    pos,
                    match c {
                        '(' => Tok::LParen,
                        ')' => Tok::RParen,
                        ',' => Tok::Comma,
                        ':' => Tok::Colon,
                        _ => Tok::Slash,
                    },
                ));
                i += 1;
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return err(format!("Unterminated string literal at position {pos}."));
                        }
                        Some((_, '\'')) if matches!(chars.get(i + 1), Some((_, '\''))) => {
                            s.push('\'');
                            i += 2;
                        }
                        Some((_, '\'')) => {
                            i += 1;
                            break;
                        }
                        Some((_, ch)) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push((pos, Tok::Str(s)));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|(_, ch)| ch.is_ascii_alphanumeric() || *ch == '_')
                {
                    i += 1;
                }
                out.push((
                    pos,
                    Tok::Ident(chars[start..i].iter().map(|(_, ch)| ch).collect()),
                ));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|(_, d)| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while chars.get(i).is_some_and(|(_, ch)| {
                    ch.is_ascii_alphanumeric() || matches!(ch, '.' | ':' | '-' | '+')
                }) {
                    i += 1;
                }
                let lexeme: String = chars[start..i].iter().map(|(_, ch)| ch).collect();
                let tok = if let Ok(n) = lexeme.parse::<i64>() {
                    Tok::Int(n)
                } else if let Some(n) = lexeme
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && !lexeme.contains([':', 'T', 'Z']))
                {
                    Tok::Num(n)
                } else if let Some(d) = parse_datetime(&lexeme) {
                    Tok::Date(d)
                } else {
                    return err(format!(
                        "Syntax error: '{lexeme}' at position {pos} is not a valid number or date."
                    ));
                };
                out.push((pos, tok));
            }
            other => {
                return err(format!(
                    "Syntax error: character '{}' at position {pos} is not valid.",
                    other.escape_default()
                ));
            }
        }
    }
    Ok(out)
}

struct Parser<'s> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    schema: &'s Schema,
    nodes: usize,
    lambda: Option<String>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn at(&self) -> String {
        match self.toks.get(self.pos) {
            Some((p, _)) => format!("position {p}"),
            None => "the end of the expression".to_owned(),
        }
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), FilterError> {
        let where_ = self.at();
        match self.next() {
            Some(t) if t == want => Ok(()),
            _ => err(format!("Syntax error: expected {what} at {where_}.")),
        }
    }

    fn node(&mut self) -> Result<(), FilterError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return err(format!(
                "The node count limit of '{MAX_NODES}' has been exceeded."
            ));
        }
        Ok(())
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw)) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn or(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.and(depth)?;
        while self.eat_keyword("or") {
            self.node()?;
            left = Expr::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.primary(depth)?;
        while self.eat_keyword("and") {
            self.node()?;
            left = Expr::And(Box::new(left), Box::new(self.primary(depth)?));
        }
        Ok(left)
    }

    fn prop(&self, name: &str) -> Result<(usize, PropType), FilterError> {
        match self
            .schema
            .props
            .iter()
            .position(|(p, _)| p.eq_ignore_ascii_case(name))
        {
            Some(i) => Ok((i, self.schema.props[i].1)),
            None => err(format!(
                "Could not find a property named '{name}' on type 'microsoft.windowsDefenderATP.api.{}' that can be used in $filter.",
                self.schema.entity
            )),
        }
    }

    fn target(&self, name: &str) -> Result<(Target, PropType), FilterError> {
        if self.lambda.as_deref().is_some_and(|v| v == name) {
            return Ok((Target::Elem, PropType::Str));
        }
        let (i, t) = self.prop(name)?;
        Ok((Target::Prop(i), t))
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if depth > MAX_DEPTH {
            return err(format!(
                "The maximum nesting depth of {MAX_DEPTH} has been exceeded."
            ));
        }
        self.node()?;
        let where_ = self.at();
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or(depth + 1)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            Some(Tok::Ident(name)) => match self.peek() {
                Some(Tok::LParen) => self.function(&name),
                Some(Tok::Slash) => self.lambda(&name, depth),
                _ => self.comparison(&name),
            },
            _ => err(format!(
                "Syntax error: expected a property, '(' or a function at {where_}."
            )),
        }
    }

    fn function(&mut self, name: &str) -> Result<Expr, FilterError> {
        if !name.eq_ignore_ascii_case("startswith") {
            return err(format!("Unknown or unsupported function '{name}'."));
        }
        self.expect(Tok::LParen, "'('")?;
        let where_ = self.at();
        let Some(Tok::Ident(prop)) = self.next() else {
            return err(format!("Syntax error: expected a property at {where_}."));
        };
        let (target, ty) = self.target(&prop)?;
        if !matches!(ty, PropType::Str | PropType::Enum(_)) {
            return err(format!(
                "startswith needs a string property; '{prop}' is not one."
            ));
        }
        self.expect(Tok::Comma, "','")?;
        let where_ = self.at();
        let Some(Tok::Str(prefix)) = self.next() else {
            return err(format!(
                "Syntax error: expected a string literal at {where_}."
            ));
        };
        self.expect(Tok::RParen, "')'")?;
        Ok(Expr::StartsWith { target, prefix })
    }

    fn lambda(&mut self, name: &str, depth: usize) -> Result<Expr, FilterError> {
        let (prop, ty) = self.prop(name)?;
        if ty != PropType::StrCollection {
            return err(format!(
                "'{name}' is not a collection; any() cannot be applied to it."
            ));
        }
        if self.lambda.is_some() {
            return err("Nested lambda expressions are not supported.");
        }
        self.expect(Tok::Slash, "'/'")?;
        if !self.eat_keyword("any") {
            return err(format!(
                "Only the any() lambda operator is supported on '{name}'."
            ));
        }
        self.expect(Tok::LParen, "'('")?;
        if self.peek() == Some(&Tok::RParen) {
            self.pos += 1;
            return Ok(Expr::Any { prop, body: None });
        }
        let where_ = self.at();
        let Some(Tok::Ident(var)) = self.next() else {
            return err(format!(
                "Syntax error: expected a range variable at {where_}."
            ));
        };
        if self
            .schema
            .props
            .iter()
            .any(|(p, _)| p.eq_ignore_ascii_case(&var))
        {
            return err(format!("The range variable '{var}' hides a property."));
        }
        self.expect(Tok::Colon, "':'")?;
        self.lambda = Some(var);
        let body = self.or(depth + 1);
        self.lambda = None;
        let body = body?;
        self.expect(Tok::RParen, "')'")?;
        Ok(Expr::Any {
            prop,
            body: Some(Box::new(body)),
        })
    }

    fn comparison(&mut self, name: &str) -> Result<Expr, FilterError> {
        let (target, ty) = self.target(name)?;
        let where_ = self.at();
        let op = match self.next() {
            Some(Tok::Ident(op)) => match op.to_ascii_lowercase().as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                _ => {
                    return err(format!(
                        "Syntax error: unknown operator '{op}' at {where_}."
                    ));
                }
            },
            _ => {
                return err(format!(
                    "Syntax error: expected an operator after '{name}' at {where_}."
                ));
            }
        };
        let where_ = self.at();
        let lit = match self.next() {
            Some(Tok::Str(s)) => Lit::Str(s),
            Some(Tok::Int(n)) => Lit::Int(n),
            Some(Tok::Num(n)) => Lit::Num(n),
            Some(Tok::Date(d)) => Lit::Date(d),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("null") => Lit::Null,
            _ => return err(format!("Syntax error: expected a literal at {where_}.")),
        };
        let ordering = !matches!(op, Op::Eq | Op::Ne);
        if lit == Lit::Null && ordering {
            return err("null can only be compared with eq or ne.");
        }
        let lit = match (ty, lit) {
            (_, Lit::Null) if ty != PropType::StrCollection => Lit::Null,
            (PropType::Str, l @ Lit::Str(_)) => l,
            (PropType::Enum(values), Lit::Str(s)) => {
                if ordering {
                    return err(format!(
                        "Operator not supported on the enumeration property '{name}'."
                    ));
                }
                match values.iter().find(|v| v.eq_ignore_ascii_case(&s)) {
                    Some(v) => Lit::Str((*v).to_owned()),
                    None => {
                        return err(format!(
                            "The string '{s}' is not a valid value of '{name}' (expected one of: {}).",
                            values.join(", ")
                        ));
                    }
                }
            }
            (PropType::Int, l @ (Lit::Int(_) | Lit::Num(_))) => l,
            (PropType::Num, Lit::Int(n)) => Lit::Num(n as f64),
            (PropType::Num, l @ Lit::Num(_)) => l,
            (PropType::Date, l @ Lit::Date(_)) => l,
            (PropType::StrCollection, _) => {
                return err(format!(
                    "'{name}' is a collection: use {name}/any(t: t eq 'value')."
                ));
            }
            (ty, l) => {
                return err(format!(
                    "A binary operator with incompatible types was detected: '{name}' ({ty:?}) and {l:?}."
                ));
            }
        };
        Ok(Expr::Cmp { target, op, lit })
    }
}

fn ci_cmp(a: &str, b: &str) -> Ordering {
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

fn ci_starts_with(s: &str, prefix: &str) -> bool {
    let mut s = s.chars().flat_map(char::to_lowercase);
    prefix
        .chars()
        .flat_map(char::to_lowercase)
        .all(|p| s.next() == Some(p))
}

fn apply(op: Op, ord: Option<Ordering>) -> bool {
    match (op, ord) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ne, Some(o)) => o != Ordering::Equal,
        (Op::Ne, None) => true,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        _ => false,
    }
}

impl Expr {
    pub(crate) fn parse(input: &str, schema: &Schema) -> Result<Expr, FilterError> {
        if input.len() > MAX_LEN {
            return err(format!(
                "The $filter expression is too long (at most {MAX_LEN} characters)."
            ));
        }
        if input.trim().is_empty() {
            return err("The $filter expression is empty.");
        }
        let toks = tokenize(input)?;
        let mut p = Parser {
            toks,
            pos: 0,
            schema,
            nodes: 0,
            lambda: None,
        };
        let e = p.or(0)?;
        if p.pos < p.toks.len() {
            return err(format!("Syntax error: unexpected token at {}.", p.at()));
        }
        Ok(e)
    }

    pub(crate) fn matches(&self, item: &dyn Filterable) -> bool {
        self.eval(item, None)
    }

    fn value<'a>(target: Target, item: &'a dyn Filterable, elem: Option<&'a str>) -> Value<'a> {
        match target {
            Target::Prop(i) => item.value(i),
            Target::Elem => Value::Str(elem),
        }
    }

    fn eval(&self, item: &dyn Filterable, elem: Option<&str>) -> bool {
        match self {
            Expr::And(a, b) => a.eval(item, elem) && b.eval(item, elem),
            Expr::Or(a, b) => a.eval(item, elem) || b.eval(item, elem),
            Expr::StartsWith { target, prefix } => match Expr::value(*target, item, elem) {
                Value::Str(Some(s)) => ci_starts_with(s, prefix),
                _ => false,
            },
            Expr::Any { prop, body } => match item.value(*prop) {
                Value::Coll(items) => match body {
                    None => !items.is_empty(),
                    Some(body) => items.iter().any(|t| body.eval(item, Some(t))),
                },
                _ => false,
            },
            Expr::Cmp { target, op, lit } => {
                let v = Expr::value(*target, item, elem);
                if *lit == Lit::Null {
                    let is_null = matches!(
                        v,
                        Value::Str(None) | Value::Int(None) | Value::Num(None) | Value::Date(None)
                    );
                    return (*op == Op::Eq) == is_null;
                }
                let ord = match (v, lit) {
                    (Value::Str(Some(s)), Lit::Str(l)) => Some(ci_cmp(s, l)),
                    (Value::Int(Some(n)), Lit::Int(l)) => Some(n.cmp(l)),
                    (Value::Int(Some(n)), Lit::Num(l)) => (n as f64).partial_cmp(l),
                    (Value::Num(Some(n)), Lit::Num(l)) => n.partial_cmp(l),
                    (Value::Date(Some(d)), Lit::Date(l)) => Some(d.cmp(l)),
                    _ => None,
                };
                apply(*op, ord)
            }
        }
    }
}

const SEVERITY: &[&str] = &["Low", "Medium", "High", "Critical"];

pub(crate) static MACHINES: Schema = Schema {
    entity: "PublicMachine",
    props: &[
        ("computerDnsName", PropType::Str),
        ("id", PropType::Str),
        ("version", PropType::Str),
        ("deviceValue", PropType::Enum(&["Normal", "Low", "High"])),
        ("aadDeviceId", PropType::Str),
        ("machineTags", PropType::StrCollection),
        ("lastSeen", PropType::Date),
        (
            "exposureLevel",
            PropType::Enum(&["None", "Low", "Medium", "High"]),
        ),
        (
            "onboardingStatus",
            PropType::Enum(&[
                "Onboarded",
                "CanBeOnboarded",
                "Unsupported",
                "InsufficientInfo",
            ]),
        ),
        ("lastIpAddress", PropType::Str),
        (
            "healthStatus",
            PropType::Enum(&[
                "Active",
                "Inactive",
                "ImpairedCommunication",
                "NoSensorData",
                "NoSensorDataImpairedCommunication",
                "Unknown",
            ]),
        ),
        ("osPlatform", PropType::Str),
        (
            "riskScore",
            PropType::Enum(&["None", "Informational", "Low", "Medium", "High"]),
        ),
        ("rbacGroupId", PropType::Int),
    ],
};

impl Filterable for Machine {
    fn value(&self, prop: usize) -> Value<'_> {
        match prop {
            0 => Value::Str(self.computer_dns_name.as_deref()),
            1 => Value::Str(Some(&self.id)),
            2 => Value::Str(self.version.as_deref()),
            3 => Value::Str(self.device_value.as_deref()),
            4 => Value::Str(self.aad_device_id.as_deref()),
            5 => Value::Coll(&self.machine_tags),
            6 => Value::Date(Some(self.last_seen)),
            7 => Value::Str(self.exposure_level.as_deref()),
            8 => Value::Str(Some(&self.onboarding_status)),
            9 => Value::Str(self.last_ip_address.as_deref()),
            10 => Value::Str(Some(&self.health_status)),
            11 => Value::Str(Some(&self.os_platform)),
            12 => Value::Str(self.risk_score.as_deref()),
            _ => Value::Int(Some(i64::from(self.rbac_group_id))),
        }
    }
}

pub(crate) static VULNERABILITIES: Schema = Schema {
    entity: "PublicVulnerability",
    props: &[
        ("id", PropType::Str),
        ("name", PropType::Str),
        ("description", PropType::Str),
        ("cvssV3", PropType::Num),
        ("publishedOn", PropType::Date),
        ("severity", PropType::Enum(SEVERITY)),
        ("updatedOn", PropType::Date),
    ],
};

impl Filterable for Vulnerability {
    fn value(&self, prop: usize) -> Value<'_> {
        match prop {
            0 => Value::Str(Some(&self.id)),
            1 => Value::Str(Some(&self.name)),
            2 => Value::Str(Some(&self.description)),
            3 => Value::Num(self.cvss_v3),
            4 => Value::Date(Some(self.published_on)),
            5 => Value::Str(Some(&self.severity)),
            _ => Value::Date(Some(self.updated_on)),
        }
    }
}

pub(crate) static MACHINE_VULNERABILITIES: Schema = Schema {
    entity: "PublicAssetVulnerabilityDto",
    props: &[
        ("id", PropType::Str),
        ("cveId", PropType::Str),
        ("machineId", PropType::Str),
        ("fixingKbId", PropType::Str),
        ("productName", PropType::Str),
        ("productVersion", PropType::Str),
        ("severity", PropType::Enum(SEVERITY)),
        ("productVendor", PropType::Str),
    ],
};

impl Filterable for MachineVulnerability {
    fn value(&self, prop: usize) -> Value<'_> {
        match prop {
            0 => Value::Str(Some(&self.id)),
            1 => Value::Str(Some(&self.cve_id)),
            2 => Value::Str(Some(&self.machine_id)),
            3 => Value::Str(self.fixing_kb_id.as_deref()),
            4 => Value::Str(Some(&self.product_name)),
            5 => Value::Str(Some(&self.product_version)),
            6 => Value::Str(Some(&self.severity)),
            _ => Value::Str(Some(&self.product_vendor)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct M {
        name: Option<String>,
        tags: Vec<String>,
        group: i64,
        seen: DateTime<Utc>,
        status: String,
    }

    static S: Schema = Schema {
        entity: "T",
        props: &[
            ("computerDnsName", PropType::Str),
            ("machineTags", PropType::StrCollection),
            ("rbacGroupId", PropType::Int),
            ("lastSeen", PropType::Date),
            (
                "onboardingStatus",
                PropType::Enum(&["Onboarded", "CanBeOnboarded"]),
            ),
        ],
    };

    impl Filterable for M {
        fn value(&self, prop: usize) -> Value<'_> {
            match prop {
                0 => Value::Str(self.name.as_deref()),
                1 => Value::Coll(&self.tags),
                2 => Value::Int(Some(self.group)),
                3 => Value::Date(Some(self.seen)),
                _ => Value::Str(Some(&self.status)),
            }
        }
    }

    fn m() -> M {
        M {
            name: Some("WS-Fin-0001.corp.contoso.com".into()),
            tags: vec!["VIP".into(), "tier1".into()],
            group: 140,
            seen: parse_datetime("2026-10-31T12:00:00Z").unwrap(),
            status: "Onboarded".into(),
        }
    }

    fn eval(f: &str) -> Result<bool, FilterError> {
        Expr::parse(f, &S).map(|e| e.matches(&m()))
    }

    #[test]
    fn accepts_the_documented_forms() {
        for (f, want) in [
            ("computerDnsName eq 'ws-fin-0001.corp.contoso.com'", true),
            ("ComputerDnsName EQ 'WS-FIN-0001.CORP.CONTOSO.COM'", true),
            ("onboardingstatus eq 'onboarded'", true),
            ("onboardingStatus ne 'Onboarded'", false),
            ("rbacGroupId eq 140 and lastSeen gt 2026-10-01Z", true),
            (
                "rbacGroupId ge 141 or (startswith(computerDnsName,'ws-') and lastSeen lt 2026-11-01T00:00:00.5Z)",
                true,
            ),
            ("machineTags/any(t: t eq 'vip')", true),
            (
                "machineTags/any(tag: tag eq 'x' or startswith(tag, 'TIER'))",
                true,
            ),
            ("machineTags/any()", true),
            ("computerDnsName eq null", false),
            ("computerDnsName ne null", true),
            ("computerDnsName eq 'it''s'", false),
            ("lastSeen ge 2026-10-31T12:00:00+00:00", true),
            ("rbacGroupId lt 140.5", true),
        ] {
            assert_eq!(eval(f), Ok(want), "{f}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for f in [
            "",
            "foo eq 1",
            "computerDnsName eq",
            "computerDnsName eq 'x",
            "computerDnsName eq 1",
            "rbacGroupId eq '140'",
            "lastSeen gt '2026-01-01'",
            "onboardingStatus eq 'bogus'",
            "onboardingStatus gt 'Onboarded'",
            "machineTags eq 'x'",
            "machineTags/all(t: t eq 'x')",
            "contains(computerDnsName,'x')",
            "computerDnsName eq 'x' and",
            "(computerDnsName eq 'x'",
            "computerDnsName eq 'x')",
            "not computerDnsName eq 'x'",
            "computerDnsName eq 'a\u{0}'\u{0}",
            "rbacGroupId eq 1e999",
            "lastSeen gt 2026-13-45Z",
            "computerDnsName gt null",
            "machineTags/any(t: t/any(u: u eq 'x'))",
        ] {
            assert!(eval(f).is_err(), "{f:?} should fail");
        }
        let deep = format!("{}rbacGroupId eq 1{}", "(".repeat(200), ")".repeat(200));
        assert!(eval(&deep).is_err());
        let long = vec!["rbacGroupId eq 1"; 300].join(" or ");
        assert!(eval(&long).is_err());
        assert!(eval(&"x".repeat(10_000)).is_err());
    }
}
