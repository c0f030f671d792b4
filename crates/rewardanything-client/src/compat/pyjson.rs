//! A parser for the JSON dialect of CPython's `json.loads` (SPEC section 3.6).
//!
//! The reference parses the model's answer with Python's `json` module, which differs
//! from strict JSON (and from `serde_json`) in ways that change results:
//!
//! * `NaN`, `Infinity` and `-Infinity` are accepted as floats; `1e400` becomes `inf`
//!   and `1e-400` becomes `0.0` (no error).
//! * Integers are exact, of any size up to 4,300 digits; a longer literal raises
//!   `ValueError` ([`ErrorKind::IntTooLong`]), which the reference does **not** catch.
//! * `-0` is the integer `0`; numbers keep their written kind (`3` vs `3.0`).
//! * Nesting deeper than [`MAX_DEPTH`] containers raises `RecursionError`
//!   ([`ErrorKind::Recursion`]), also not caught by the reference.
//! * Objects keep their key order; a repeated key keeps its first position and takes
//!   the last value, like a Python `dict`.
//! * Only space, `\t`, `\n` and `\r` are whitespace; raw control characters inside
//!   strings are errors; text after the value is an error ("Extra data").
//!
//! **Lone surrogates.** Python accepts escapes such as `"\ud800"` that are not part of a
//! surrogate pair and keeps the lone surrogate in the string. A Rust `String` cannot
//! hold one, so this parser replaces each lone surrogate with U+FFFD. The parse still
//! *succeeds* exactly where Python's does, so every recovery stage takes the same path
//! as the reference; only the character differs.
//!
//! The parser is iterative (an explicit stack), so hostile nesting can never overflow
//! the Rust stack, and it runs in linear time.
//!
//! ```
//! use rewardanything_client::compat::pyjson::{self, Value};
//! let v = pyjson::loads(r#"{"a": 1, "b": NaN, "a": 3.0}"#).unwrap();
//! let obj = v.as_object().unwrap();
//! assert_eq!(obj.keys().collect::<Vec<_>>(), ["a", "b"]);
//! assert_eq!(obj["a"].as_f64(), Some(3.0));
//! assert!(obj["b"].as_f64().unwrap().is_nan());
//! assert_eq!(pyjson::loads("[[1]] x").unwrap_err().kind, pyjson::ErrorKind::Syntax);
//! ```

use indexmap::IndexMap;

/// The deepest container nesting accepted, counting the outermost container as 1.
///
/// CPython 3.8–3.11 raise `RecursionError` at about 995 levels with the default
/// recursion limit (the exact figure depends on the caller's own stack depth); this
/// port fixes it at 995. 3.12 and 3.13 accept more; the vectors only pin that 300
/// levels parse and that very deep nesting fails.
pub const MAX_DEPTH: usize = 995;

/// The longest integer literal (in digits, sign excluded) Python converts; longer raises
/// `ValueError` (CPython's `sys.get_int_max_str_digits()` default).
pub const MAX_INT_DIGITS: usize = 4300;

/// An object: keys in first-occurrence order.
pub type Object = IndexMap<String, Value>;

/// A Python integer as `json.loads` produces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Int {
    /// Fits in an `i64`.
    Small(i64),
    /// Outside `i64`: canonical decimal text (optional `-`, no leading zeros), at most
    /// [`MAX_INT_DIGITS`] digits.
    Big(String),
}

impl Int {
    /// Python's `float(int)`: correctly rounded; `None` when it overflows (Python raises
    /// `OverflowError`).
    pub fn to_f64(&self) -> Option<f64> {
        match self {
            Int::Small(i) => Some(*i as f64),
            Int::Big(s) => s.parse::<f64>().ok().filter(|f| f.is_finite()),
        }
    }

    /// Whether the integer is zero.
    pub fn is_zero(&self) -> bool {
        matches!(self, Int::Small(0))
    }
}

impl std::fmt::Display for Int {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Int::Small(i) => write!(f, "{i}"),
            Int::Big(s) => f.write_str(s),
        }
    }
}

/// A Python float as `json.loads` produces it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Float {
    /// The value, possibly NaN or infinite.
    pub value: f64,
    /// The literal was non-zero but the value became zero or subnormal (e.g. `1e-400`).
    pub underflow: bool,
}

/// A value produced by [`loads`]: Python's `None`, `bool`, `int`, `float`, `str`,
/// `list` or `dict`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer literal (no fraction, no exponent).
    Int(Int),
    /// A float literal, `NaN`, `Infinity` or `-Infinity`.
    Float(Float),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, in first-occurrence key order.
    Object(Object),
}

impl Value {
    /// Python truthiness: `None`, `False`, `0`, `0.0`, `-0.0`, `""`, `[]` and `{}` are
    /// falsy (NaN is truthy).
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => !i.is_zero(),
            Value::Float(f) => f.value != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        }
    }

    /// The Python type name (`dict`, `list`, `str`, `int`, `float`, `bool`, `NoneType`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Array(_) => "list",
            Value::Object(_) => "dict",
        }
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An int or float as `f64` (bools and big ints that overflow give `None`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => i.to_f64(),
            Value::Float(f) => Some(f.value),
            _ => None,
        }
    }

    /// Converts to `serde_json::Value` using the vector files' conventions (SPEC 0.1):
    /// non-finite floats become `{"$float": "NaN" | "Infinity" | "-Infinity"}` and
    /// integers outside `[-2^63, 2^64)` become `{"$int": "<digits>"}`.
    ///
    /// ```
    /// let v = rewardanything_client::compat::pyjson::loads("[NaN, 2, 2.5]").unwrap();
    /// assert_eq!(v.to_serde().to_string(), r#"[{"$float":"NaN"},2,2.5]"#);
    /// ```
    pub fn to_serde(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(Int::Small(i)) => J::from(*i),
            Value::Int(Int::Big(s)) => match s.parse::<u64>() {
                Ok(u) => J::from(u),
                Err(_) => {
                    let mut m = serde_json::Map::new();
                    m.insert("$int".into(), J::String(s.clone()));
                    J::Object(m)
                }
            },
            Value::Float(f) => match serde_json::Number::from_f64(f.value) {
                Some(n) => J::Number(n),
                None => {
                    let name = if f.value.is_nan() {
                        "NaN"
                    } else if f.value > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    };
                    let mut m = serde_json::Map::new();
                    m.insert("$float".into(), J::String(name.into()));
                    J::Object(m)
                }
            },
            Value::Str(s) => J::String(s.clone()),
            Value::Array(a) => J::Array(a.iter().map(Value::to_serde).collect()),
            Value::Object(o) => {
                J::Object(o.iter().map(|(k, v)| (k.clone(), v.to_serde())).collect())
            }
        }
    }
}

/// Which Python exception `json.loads` would raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `json.JSONDecodeError` (a `ValueError` subclass the reference catches).
    Syntax,
    /// `ValueError`: an integer literal longer than [`MAX_INT_DIGITS`] digits.
    IntTooLong,
    /// `RecursionError`: nesting deeper than [`MAX_DEPTH`].
    Recursion,
}

/// A failure of [`loads`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (byte {pos})")]
pub struct Error {
    /// The Python exception this corresponds to.
    pub kind: ErrorKind,
    /// A message in the style of Python's.
    pub message: String,
    /// Byte offset in the input where the error was found.
    pub pos: usize,
}

fn syntax(message: &str, pos: usize) -> Error {
    Error {
        kind: ErrorKind::Syntax,
        message: message.to_string(),
        pos,
    }
}

enum Frame {
    Array(Vec<Value>),
    Object(Object, String),
}

/// Parses `text` like Python's `json.loads(text)`.
///
/// ```
/// use rewardanything_client::compat::pyjson::{loads, ErrorKind, Int, Value};
/// assert_eq!(loads(" -0 ").unwrap(), Value::Int(Int::Small(0)));
/// assert_eq!(loads("1e400").unwrap().as_f64(), Some(f64::INFINITY));
/// assert_eq!(loads(&"[".repeat(100_000)).unwrap_err().kind, ErrorKind::Recursion);
/// assert_eq!(loads(&"9".repeat(4301)).unwrap_err().kind, ErrorKind::IntTooLong);
/// ```
pub fn loads(text: &str) -> Result<Value, Error> {
    Parser {
        s: text,
        b: text.as_bytes(),
        pos: 0,
    }
    .run()
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn run(mut self) -> Result<Value, Error> {
        let mut stack: Vec<Frame> = Vec::new();
        self.skip_ws();
        'value: loop {
            // Parse one value at `pos`; containers push a frame and parse their first
            // element in the next turn of the loop.
            let mut v = match self.peek() {
                Some(b'{') => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(Error {
                            kind: ErrorKind::Recursion,
                            message: "maximum recursion depth exceeded while decoding a JSON object from a unicode string".into(),
                            pos: self.pos,
                        });
                    }
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        Value::Object(Object::new())
                    } else {
                        let key = self.object_key()?;
                        stack.push(Frame::Object(Object::new(), key));
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(Error {
                            kind: ErrorKind::Recursion,
                            message: "maximum recursion depth exceeded while decoding a JSON array from a unicode string".into(),
                            pos: self.pos,
                        });
                    }
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        Value::Array(Vec::new())
                    } else {
                        stack.push(Frame::Array(Vec::new()));
                        continue 'value;
                    }
                }
                _ => self.scalar()?,
            };
            // Attach the finished value to its parent; close every container that ends here.
            loop {
                match stack.last_mut() {
                    None => {
                        self.skip_ws();
                        if self.pos != self.b.len() {
                            return Err(syntax("Extra data", self.pos));
                        }
                        return Ok(v);
                    }
                    Some(Frame::Array(items)) => {
                        items.push(v);
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                self.skip_ws();
                                continue 'value;
                            }
                            Some(b']') => {
                                self.pos += 1;
                                match stack.pop() {
                                    Some(Frame::Array(items)) => v = Value::Array(items),
                                    _ => unreachable!("top frame is an array"),
                                }
                            }
                            _ => return Err(syntax("Expecting ',' delimiter", self.pos)),
                        }
                    }
                    Some(Frame::Object(map, key)) => {
                        map.insert(std::mem::take(key), v);
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                self.skip_ws();
                                if self.peek() != Some(b'"') {
                                    return Err(syntax(
                                        "Expecting property name enclosed in double quotes",
                                        self.pos,
                                    ));
                                }
                                let k = self.object_key()?;
                                if let Some(Frame::Object(_, key)) = stack.last_mut() {
                                    *key = k;
                                }
                                continue 'value;
                            }
                            Some(b'}') => {
                                self.pos += 1;
                                match stack.pop() {
                                    Some(Frame::Object(map, _)) => v = Value::Object(map),
                                    _ => unreachable!("top frame is an object"),
                                }
                            }
                            _ => return Err(syntax("Expecting ',' delimiter", self.pos)),
                        }
                    }
                }
            }
        }
    }

    /// At a `"` (after `{` or `,` and whitespace): the key, the `:` and the whitespace
    /// before the value.
    fn object_key(&mut self) -> Result<String, Error> {
        if self.peek() != Some(b'"') {
            return Err(syntax(
                "Expecting property name enclosed in double quotes",
                self.pos,
            ));
        }
        let key = self.string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(syntax("Expecting ':' delimiter", self.pos));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(key)
    }

    fn literal(&mut self, word: &str) -> bool {
        if self.b[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn scalar(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        let v = match self.peek() {
            Some(b'"') => Value::Str(self.string()?),
            Some(b'n') if self.literal("null") => Value::Null,
            Some(b't') if self.literal("true") => Value::Bool(true),
            Some(b'f') if self.literal("false") => Value::Bool(false),
            Some(b'N') if self.literal("NaN") => Value::Float(Float {
                value: f64::NAN,
                underflow: false,
            }),
            Some(b'I') if self.literal("Infinity") => Value::Float(Float {
                value: f64::INFINITY,
                underflow: false,
            }),
            Some(b'-') if self.b[self.pos..].starts_with(b"-Infinity") => {
                self.pos += 9;
                Value::Float(Float {
                    value: f64::NEG_INFINITY,
                    underflow: false,
                })
            }
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(syntax("Expecting value", start)),
        };
        Ok(v)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Python's number regex: `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`, matched greedily
    /// with backtracking over an incomplete fraction or exponent.
    fn number(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(syntax("Expecting value", start)),
        }
        let int_end = self.pos;
        let mut is_float = false;
        if self.peek() == Some(b'.') && matches!(self.b.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            self.digits();
            is_float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                self.pos = save;
            } else {
                is_float = true;
            }
        }
        let lit = &self.s[start..self.pos];
        if is_float {
            let value: f64 = lit.parse().map_err(|_| syntax("Expecting value", start))?;
            let underflow = (value == 0.0 || value.is_subnormal())
                && self.s[int_start..self.pos]
                    .split(['e', 'E'])
                    .next()
                    .is_some_and(|m| m.bytes().any(|c| matches!(c, b'1'..=b'9')));
            return Ok(Value::Float(Float { value, underflow }));
        }
        let ndigits = int_end - int_start;
        if ndigits > MAX_INT_DIGITS {
            return Err(Error {
                kind: ErrorKind::IntTooLong,
                message: format!(
                    "Exceeds the limit ({MAX_INT_DIGITS} digits) for integer string conversion: value has {ndigits} digits; use sys.set_int_max_str_digits() to increase the limit"
                ),
                pos: start,
            });
        }
        if let Ok(i) = lit.parse::<i64>() {
            return Ok(Value::Int(Int::Small(i)));
        }
        Ok(Value::Int(Int::Big(lit.to_string())))
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let h = self.b.get(at..at + 4)?;
        let mut v = 0u32;
        for &c in h {
            v = v * 16 + (c as char).to_digit(16)?;
        }
        Some(v)
    }

    /// At a `"`: the decoded string; `pos` ends after the closing quote.
    fn string(&mut self) -> Result<String, Error> {
        let begin = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let chunk_start = self.pos;
            while let Some(&c) = self.b.get(self.pos) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.s[chunk_start..self.pos]);
            match self.peek() {
                None => return Err(syntax("Unterminated string starting at", begin)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let esc = self.pos;
                    match self.b.get(self.pos + 1) {
                        None => return Err(syntax("Unterminated string starting at", begin)),
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let Some(hi) = self.hex4(esc + 2) else {
                                return Err(syntax("Invalid \\uXXXX escape", esc + 1));
                            };
                            self.pos = esc + 6;
                            if (0xD800..0xDC00).contains(&hi)
                                && self.b[self.pos..].starts_with(b"\\u")
                            {
                                let Some(lo) = self.hex4(self.pos + 2) else {
                                    return Err(syntax("Invalid \\uXXXX escape", self.pos + 1));
                                };
                                if (0xDC00..0xE000).contains(&lo) {
                                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                    out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                                    self.pos += 6;
                                    continue;
                                }
                            }
                            // A lone surrogate cannot live in a Rust string: U+FFFD.
                            out.push(char::from_u32(hi).unwrap_or('\u{FFFD}'));
                            continue;
                        }
                        Some(_) => return Err(syntax("Invalid \\escape", esc)),
                    }
                    self.pos = esc + 2;
                }
                Some(_) => return Err(syntax("Invalid control character at", self.pos)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_dialect_basics() {
        assert_eq!(loads("0").unwrap(), Value::Int(Int::Small(0)));
        assert_eq!(loads("-0").unwrap(), Value::Int(Int::Small(0)));
        let v = loads("-0.0").unwrap();
        assert!(!v.is_truthy());
        assert!(v.as_f64().unwrap().is_sign_negative());
        assert_eq!(loads("1E2").unwrap().as_f64(), Some(100.0));
        assert!(matches!(loads("3.0").unwrap(), Value::Float(_)));
        assert!(matches!(
            loads("1e-400").unwrap(),
            Value::Float(Float {
                underflow: true,
                ..
            })
        ));
        assert!(matches!(
            loads("0e-400").unwrap(),
            Value::Float(Float {
                underflow: false,
                ..
            })
        ));
        assert_eq!(
            loads("-Infinity").unwrap().as_f64(),
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(loads("1.").unwrap_err().message, "Extra data");
        assert_eq!(loads("01").unwrap_err().message, "Extra data");
        assert_eq!(loads("1e").unwrap_err().message, "Extra data");
        assert_eq!(loads("-").unwrap_err().message, "Expecting value");
        assert_eq!(loads("\u{feff}{}").unwrap_err().kind, ErrorKind::Syntax);
        assert_eq!(loads("\u{a0}1").unwrap_err().kind, ErrorKind::Syntax);
        assert!(loads("[1,]").is_err());
        assert!(loads("{\"a\":1,}").is_err());
        assert!(loads("\"a\nb\"").is_err());
        assert!(loads("{'a': 1}").is_err());
        assert!(loads("[1] [2]").is_err());
        assert!(loads(" \t\r\n[ 1 , 2 ] \n").is_ok());
    }

    #[test]
    fn big_ints_and_limits() {
        let big = "123456789012345678901234567890";
        assert_eq!(loads(big).unwrap(), Value::Int(Int::Big(big.into())));
        assert_eq!(
            loads(&format!("-{big}")).unwrap(),
            Value::Int(Int::Big(format!("-{big}")))
        );
        assert!(loads(&"9".repeat(4300)).is_ok());
        assert!(loads(&format!("-{}", "9".repeat(4300))).is_ok());
        assert_eq!(
            loads(&"9".repeat(4301)).unwrap_err().kind,
            ErrorKind::IntTooLong
        );
        // Float literals have no digit limit.
        assert!(loads(&format!("{}.0", "9".repeat(5000))).is_ok());
        // The first error in reading order wins, as in Python.
        assert_eq!(
            loads(&format!("[1 2, {}]", "9".repeat(5000)))
                .unwrap_err()
                .kind,
            ErrorKind::Syntax
        );
        assert_eq!(
            loads(&format!("[{}, 1 2]", "9".repeat(5000)))
                .unwrap_err()
                .kind,
            ErrorKind::IntTooLong
        );
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(loads(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(loads(&deep).unwrap_err().kind, ErrorKind::Recursion);
        let objs = format!(
            "{}1{}",
            "{\"a\":".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(loads(&objs).unwrap_err().kind, ErrorKind::Recursion);
        assert_eq!(
            loads(&"{\"a\": [".repeat(200_000)).unwrap_err().kind,
            ErrorKind::Recursion
        );
    }

    #[test]
    fn strings_and_keys() {
        let v = loads(r#"{"b": 1, "a": 2, "b": 3}"#).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(o["b"], Value::Int(Int::Small(3)));
        assert_eq!(
            loads(r#""\ud83e\udd16 \u00e9\/\t""#).unwrap(),
            Value::Str("🤖 é/\t".into())
        );
        assert_eq!(
            loads(r#""\ud800x""#).unwrap(),
            Value::Str("\u{FFFD}x".into())
        );
        assert_eq!(
            loads(r#""\udc00\ud800\u0041""#).unwrap(),
            Value::Str("\u{FFFD}\u{FFFD}A".into())
        );
        assert!(loads(r#""\x""#).is_err());
        assert!(loads(r#""\u12g4""#).is_err());
        assert!(loads(r#""abc"#).is_err());
        assert_eq!(loads("\"日本\"").unwrap(), Value::Str("日本".into()));
    }
}
