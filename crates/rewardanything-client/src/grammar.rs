//! GBNF grammars that force RewardAnything's output shape on llama.cpp servers.
//!
//! A small model (or a quantised RewardAnything on a CPU) does not reliably
//! print the judgment format by itself. llama.cpp's server accepts a
//! per-request `grammar` field (GBNF) and only samples tokens the grammar
//! allows; [`rewardanything_gbnf`] builds that grammar from the request's
//! masked names, so every answer has exactly the shape the parser expects:
//!
//! ```text
//! <think>
//! …at most max_think_chars characters, none of them '<'…
//! </think>
//!
//! {"scores": {"model-1": 4, "model-2": 2}, "best-to-worst": ["model-1", "model-2"]}
//! ```
//!
//! * The think text starts with a non-blank character, contains no `<` (so it
//!   cannot open or close another tag), and is at most
//!   [`GrammarOptions::max_think_chars`] characters long (counted in Unicode
//!   scalar values; about four characters per token).
//! * Scores are single digits `1`–`5`, with the keys in the given order.
//! * The ranking lists every name exactly once when there are at most
//!   [`GrammarOptions::max_permutation_names`] names. The grammar encodes "names
//!   not yet used" as one rule per subset of names, so its size grows as
//!   N·2^(N−1) alternatives (1,024 at N = 8, the default limit). Above the limit
//!   the ranking is any sequence of exactly N of the names, and duplicates must
//!   be caught by the parser's validation of the judgment.
//! * Names may contain any characters: each is written as its JSON string
//!   (quotes, backslashes and control characters escaped as JSON requires),
//!   and that JSON text is then escaped again as a GBNF string literal.
//!
//! Send the result as the `grammar` field of a `/v1/chat/completions` request
//! to llama.cpp's server. vLLM does not read this field (it has its own
//! structured-output options).
//!
//! ```
//! use rewardanything_client::{GrammarOptions, rewardanything_gbnf};
//!
//! let gbnf = rewardanything_gbnf(&["model-1", "model-2"], &GrammarOptions::default());
//! assert!(gbnf.starts_with("root ::= think judgment\n"));
//! assert!(gbnf.contains(r#"name-0 ::= "\"model-1\"""#));
//!
//! let body = serde_json::json!({
//!     "messages": [{"role": "user", "content": "…"}],
//!     "max_tokens": 256,
//!     "grammar": gbnf,
//! });
//! assert!(body["grammar"].is_string());
//! ```

use std::collections::HashSet;
use std::fmt::Write as _;

/// Knobs for [`rewardanything_gbnf`].
///
/// Marked non-exhaustive so options can be added without breaking callers:
/// start from [`GrammarOptions::default`] and use the `with_*` methods.
///
/// ```
/// use rewardanything_client::GrammarOptions;
/// let opts = GrammarOptions::default().with_max_think_chars(120);
/// assert_eq!(opts.max_think_chars, 120);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrammarOptions {
    /// Most characters allowed between `<think>\n` and `\n</think>`
    /// (default 200, about 50–60 tokens). `0` forces an empty think block.
    pub max_think_chars: usize,
    /// Largest number of names for which the ranking is forced to be a
    /// permutation (default 8); above it any N names are allowed.
    pub max_permutation_names: usize,
    /// Leave `<think>\n` out of the grammar, for chat templates that already
    /// put it at the start of the assistant turn (default `false`).
    pub think_prefilled: bool,
}

impl Default for GrammarOptions {
    fn default() -> Self {
        Self {
            max_think_chars: 200,
            max_permutation_names: 8,
            think_prefilled: false,
        }
    }
}

impl GrammarOptions {
    /// Sets [`GrammarOptions::max_think_chars`].
    #[must_use]
    pub fn with_max_think_chars(mut self, chars: usize) -> Self {
        self.max_think_chars = chars;
        self
    }

    /// Sets [`GrammarOptions::max_permutation_names`].
    ///
    /// The grammar has N·2^(N−1) ranking alternatives up to this limit, so
    /// values much above 10 make very large grammars.
    #[must_use]
    pub fn with_max_permutation_names(mut self, n: usize) -> Self {
        self.max_permutation_names = n;
        self
    }

    /// Sets [`GrammarOptions::think_prefilled`].
    #[must_use]
    pub fn with_think_prefilled(mut self, prefilled: bool) -> Self {
        self.think_prefilled = prefilled;
        self
    }
}

/// Builds a llama.cpp GBNF grammar that forces a RewardAnything judgment over
/// `masked_names`: a think block of at most `max_think_chars` characters, then
/// the judgment JSON with exactly those names ([`GrammarOptions`]).
///
/// Duplicate names are dropped (first occurrence kept), since a JSON object
/// cannot hold the same key twice. An empty list gives a grammar for
/// `{"scores": {}, "best-to-worst": []}`.
///
/// ```
/// use rewardanything_client::{GrammarOptions, rewardanything_gbnf};
/// let gbnf = rewardanything_gbnf(&["a\"b", "c"], &GrammarOptions::default());
/// // The JSON string "a\"b", escaped once more as a GBNF literal.
/// assert!(gbnf.contains(r#"name-0 ::= "\"a\\\"b\"""#));
/// ```
pub fn rewardanything_gbnf(masked_names: &[&str], opts: &GrammarOptions) -> String {
    let mut seen = HashSet::new();
    let names: Vec<&str> = masked_names
        .iter()
        .copied()
        .filter(|n| seen.insert(*n))
        .collect();
    let n = names.len();

    let mut g = String::new();
    // `write!` into a String cannot fail; the results are ignored for that reason.
    g.push_str("root ::= think judgment\n");

    let open = if opts.think_prefilled {
        ""
    } else {
        "\"<think>\\n\" "
    };
    if opts.max_think_chars == 0 {
        let _ = writeln!(g, "think ::= {open}\"\\n</think>\\n\\n\"");
    } else {
        let _ = writeln!(g, "think ::= {open}think-text \"\\n</think>\\n\\n\"");
        // First character non-blank so the model cannot pad with newlines;
        // no '<' anywhere so no tag can open or close early.
        let rest = opts.max_think_chars - 1;
        if rest == 0 {
            g.push_str("think-text ::= [^<\\t\\n\\r ]\n");
        } else {
            let _ = writeln!(g, "think-text ::= [^<\\t\\n\\r ] [^<]{{0,{rest}}}");
        }
    }

    g.push_str(
        "judgment ::= \"{\\\"scores\\\": {\" scores \"}, \\\"best-to-worst\\\": [\" ranking \"]}\"\n",
    );

    // Scores, keys in the given order.
    g.push_str("scores ::=");
    if n == 0 {
        g.push_str(" \"\"");
    }
    for i in 0..n {
        if i > 0 {
            g.push_str(" \", \"");
        }
        let _ = write!(g, " name-{i} \": \" score");
    }
    g.push('\n');
    g.push_str("score ::= [1-5]\n");

    // Ranking.
    if n == 0 {
        g.push_str("ranking ::= \"\"\n");
    } else if n <= opts.max_permutation_names {
        // rank-S lists the names in bit set S, each exactly once.
        let full = (1usize << n) - 1;
        let _ = writeln!(g, "ranking ::= rank-{full}");
        for set in 1..=full {
            let _ = write!(g, "rank-{set} ::=");
            let mut first = true;
            for i in (0..n).filter(|i| set & (1 << i) != 0) {
                if !first {
                    g.push_str(" |");
                }
                first = false;
                let rest = set & !(1 << i);
                if rest == 0 {
                    let _ = write!(g, " name-{i}");
                } else {
                    let _ = write!(g, " name-{i} \", \" rank-{rest}");
                }
            }
            g.push('\n');
        }
    } else {
        let _ = writeln!(g, "ranking ::= any-name (\", \" any-name){{{}}}", n - 1);
        g.push_str("any-name ::=");
        for i in 0..n {
            if i > 0 {
                g.push_str(" |");
            }
            let _ = write!(g, " name-{i}");
        }
        g.push('\n');
    }

    for (i, name) in names.iter().enumerate() {
        let _ = writeln!(g, "name-{i} ::= {}", gbnf_literal(&json_string(name)));
    }
    g
}

/// The JSON text of `s` as a string (with its quotes), as the model must print it: the
/// one Python-compatible writer the prompt uses too.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::render::push_json_string(&mut out, s);
    out
}

/// `s` as a GBNF string literal: `"` and `\` escaped, control characters
/// as `\xHH`, everything else (including non-ASCII) as UTF-8.
fn gbnf_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"root ::= think judgment
think ::= "<think>\n" think-text "\n</think>\n\n"
think-text ::= [^<\t\n\r ] [^<]{0,199}
judgment ::= "{\"scores\": {" scores "}, \"best-to-worst\": [" ranking "]}"
scores ::= name-0 ": " score ", " name-1 ": " score
score ::= [1-5]
ranking ::= rank-3
rank-1 ::= name-0
rank-2 ::= name-1
rank-3 ::= name-0 ", " rank-2 | name-1 ", " rank-1
name-0 ::= "\"model-1\""
name-1 ::= "\"model-2\""
"#;

    #[test]
    fn two_names_exact_text() {
        let g = rewardanything_gbnf(&["model-1", "model-2"], &GrammarOptions::default());
        assert_eq!(g, TWO);
    }

    #[test]
    fn escapes_weird_names() {
        let g = rewardanything_gbnf(
            &["a\"b", "back\\slash", "new\nline", "é😀", "\u{1}"],
            &GrammarOptions::default(),
        );
        assert!(g.contains(r#"name-0 ::= "\"a\\\"b\"""#), "{g}");
        assert!(g.contains(r#"name-1 ::= "\"back\\\\slash\"""#), "{g}");
        assert!(g.contains(r#"name-2 ::= "\"new\\nline\"""#), "{g}");
        assert!(g.contains("name-3 ::= \"\\\"é😀\\\"\""), "{g}");
        assert!(g.contains(r#"name-4 ::= "\"\\u0001\"""#), "{g}");
    }

    #[test]
    fn json_string_matches_serde() {
        for s in ["", "x", "a\"b\\c", "\u{0}\u{1f}\u{7f}", "tab\there", "é😀/"] {
            let ours = json_string(s);
            let back: String = serde_json::from_str(&ours).expect("valid JSON");
            assert_eq!(back, s);
            assert_eq!(ours, serde_json::to_string(s).expect("serialises"));
        }
    }

    #[test]
    fn duplicates_dropped_and_empty_list() {
        let g = rewardanything_gbnf(&["a", "b", "a"], &GrammarOptions::default());
        assert!(g.contains("name-1 ::= \"\\\"b\\\"\"\n"));
        assert!(!g.contains("name-2"));
        let g = rewardanything_gbnf(&[], &GrammarOptions::default());
        let m = gbnf::Grammar::parse(&g);
        assert!(m.accepts("<think>\nok\n</think>\n\n{\"scores\": {}, \"best-to-worst\": []}"));
    }

    /// A judgment in the forced shape.
    fn output(think: &str, scores: &[(&str, u8)], ranking: &[&str]) -> String {
        let scores: Vec<String> = scores
            .iter()
            .map(|(n, d)| format!("{}: {d}", json_string(n)))
            .collect();
        let ranking: Vec<String> = ranking.iter().map(|n| json_string(n)).collect();
        format!(
            "<think>\n{think}\n</think>\n\n{{\"scores\": {{{}}}, \"best-to-worst\": [{}]}}",
            scores.join(", "),
            ranking.join(", ")
        )
    }

    #[test]
    fn accepts_and_rejects() {
        let names = ["model-1", "model-2", "model-3"];
        let g = gbnf::Grammar::parse(&rewardanything_gbnf(&names, &GrammarOptions::default()));
        let sc = [("model-1", 4), ("model-2", 2), ("model-3", 5)];
        let good = output("Short reasoning.", &sc, &["model-3", "model-1", "model-2"]);
        assert!(g.accepts(&good));
        // Output must also parse as what it claims to be.
        let json = good.split("</think>\n\n").nth(1).expect("json part");
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        assert_eq!(v["scores"]["model-3"], 5);

        let rejects = [
            output("x", &sc, &["model-3", "model-3", "model-2"]), // duplicate
            output("x", &sc, &["model-3", "model-1"]),            // missing one
            output("x", &[("model-1", 6), sc[1], sc[2]], &names), // score out of range
            output("x", &[("model-1", 0), sc[1], sc[2]], &names),
            output("x", &[sc[1], sc[0], sc[2]], &names), // key order
            output("x", &sc, &["model-3", "model-1", "model-9"]), // unknown name
            output("a <b", &sc, &names),                 // '<' in think
            output("\nx", &sc, &names),                  // blank start
            output(&"y".repeat(201), &sc, &names),       // too long
            output("x", &sc, &names).replace("\": 4", "\":4"), // spacing
        ];
        for r in &rejects {
            assert!(!g.accepts(r), "accepted: {r}");
        }
        assert!(g.accepts(&output(&"y".repeat(200), &sc, &names)));
        assert!(g.accepts(&output("y\ny", &sc, &names)));
    }

    #[test]
    fn fallback_above_limit_allows_duplicates_of_right_length() {
        let names = ["a", "b", "c"];
        let opts = GrammarOptions::default().with_max_permutation_names(2);
        let g = gbnf::Grammar::parse(&rewardanything_gbnf(&names, &opts));
        let sc = [("a", 1), ("b", 2), ("c", 3)];
        assert!(g.accepts(&output("x", &sc, &["c", "b", "a"])));
        assert!(g.accepts(&output("x", &sc, &["c", "c", "a"])));
        assert!(!g.accepts(&output("x", &sc, &["c", "a"])));
        assert!(!g.accepts(&output("x", &sc, &["c", "a", "b", "a"])));
    }

    #[test]
    fn permutation_grammar_accepts_exactly_the_permutations_of_four() {
        let names = ["w", "x", "y", "z"];
        let g = gbnf::Grammar::parse(&rewardanything_gbnf(&names, &GrammarOptions::default()));
        let sc: Vec<(&str, u8)> = names.iter().map(|n| (*n, 3)).collect();
        let mut accepted = 0;
        // All 4^4 sequences: exactly the 24 without repeats are accepted.
        for code in 0..256usize {
            let seq: Vec<&str> = (0..4).map(|k| names[(code >> (2 * k)) & 3]).collect();
            let distinct = seq.iter().collect::<HashSet<_>>().len() == 4;
            assert_eq!(g.accepts(&output("t", &sc, &seq)), distinct, "{seq:?}");
            accepted += usize::from(distinct);
        }
        assert_eq!(accepted, 24);
    }

    #[test]
    fn think_options() {
        let sc = [("m", 5)];
        let opts = GrammarOptions::default().with_max_think_chars(0);
        let g = gbnf::Grammar::parse(&rewardanything_gbnf(&["m"], &opts));
        assert!(g.accepts(&output("", &sc, &["m"])));
        assert!(!g.accepts(&output("x", &sc, &["m"])));

        let opts = GrammarOptions::default().with_max_think_chars(1);
        let g = gbnf::Grammar::parse(&rewardanything_gbnf(&["m"], &opts));
        assert!(g.accepts(&output("x", &sc, &["m"])));
        assert!(!g.accepts(&output("xy", &sc, &["m"])));

        let opts = GrammarOptions::default().with_think_prefilled(true);
        let g = gbnf::Grammar::parse(&rewardanything_gbnf(&["m"], &opts));
        let full = output("why", &sc, &["m"]);
        let tail = full.strip_prefix("<think>\n").expect("prefix");
        assert!(g.accepts(tail));
        assert!(!g.accepts(&full));
    }

    #[test]
    fn grammar_size_at_default_limit() {
        let names: Vec<String> = (1..=8).map(|i| format!("model-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let g = rewardanything_gbnf(&refs, &GrammarOptions::default());
        // N·2^(N-1) alternatives over the 2^N - 1 subset rules.
        let rank_rules: Vec<&str> = g.lines().filter(|l| l.starts_with("rank-")).collect();
        assert_eq!(rank_rules.len(), 255);
        let alternatives: usize = rank_rules.iter().map(|l| l.split('|').count()).sum();
        assert_eq!(alternatives, 8 * 128);
        assert!(g.len() < 40_000, "{} bytes", g.len());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            /// Any names (any Unicode, quotes, backslashes, controls) give a
            /// grammar whose literals decode to exactly the names' JSON text,
            /// and which accepts a well-formed judgment whose JSON parses back
            /// to the same names.
            #[test]
            fn any_names_round_trip(raw in proptest::collection::vec(any::<String>(), 1..5)) {
                let mut seen = HashSet::new();
                let names: Vec<&str> = raw.iter().map(String::as_str).filter(|n| seen.insert(*n)).collect();
                let g = rewardanything_gbnf(&names, &GrammarOptions::default());
                let parsed = gbnf::Grammar::parse(&g);
                let sc: Vec<(&str, u8)> = names.iter().map(|n| (*n, 2)).collect();
                let mut ranking = names.clone();
                ranking.reverse();
                let out = output("Because.", &sc, &ranking);
                prop_assert!(parsed.accepts(&out));
                let json = &out[out.find("</think>\n\n").expect("tag") + 10..];
                // Python's dialect keeps key order (serde_json does only with a feature).
                let v = crate::compat::pyjson::loads(json).expect("json");
                let scores = v.as_object().and_then(|o| o.get("scores")).and_then(|s| s.as_object()).expect("obj");
                let keys: Vec<&str> = scores.keys().map(String::as_str).collect();
                prop_assert_eq!(keys, names.clone());
            }
        }
    }

    /// A matcher for the GBNF subset the builder emits (literals, character
    /// classes, rule references, groups, alternation, `{m,n}`), so the tests
    /// can check what the grammar accepts rather than only its text. It
    /// follows llama.cpp's grammar-parser escapes; the real parser is
    /// exercised against a live server outside the unit tests.
    mod gbnf {
        use std::cell::RefCell;
        use std::collections::{BTreeSet, HashMap};

        #[derive(Debug, Clone)]
        enum Expr {
            Lit(Vec<char>),
            Class {
                negated: bool,
                ranges: Vec<(char, char)>,
            },
            Ref(String),
            Seq(Vec<Expr>),
            Alt(Vec<Expr>),
            Rep(Box<Expr>, usize, usize),
        }

        pub struct Grammar {
            rules: HashMap<String, Expr>,
        }

        struct P<'a> {
            s: &'a [char],
            i: usize,
        }

        impl P<'_> {
            fn ws(&mut self) {
                while self.i < self.s.len() && (self.s[self.i] == ' ' || self.s[self.i] == '\t') {
                    self.i += 1;
                }
            }
            fn peek(&self) -> Option<char> {
                self.s.get(self.i).copied()
            }
            fn char_esc(&mut self) -> char {
                let c = self.s[self.i];
                self.i += 1;
                if c != '\\' {
                    return c;
                }
                let e = self.s[self.i];
                self.i += 1;
                let hex = |p: &mut Self, n: usize| {
                    let h: String = p.s[p.i..p.i + n].iter().collect();
                    p.i += n;
                    char::from_u32(u32::from_str_radix(&h, 16).expect("hex")).expect("char")
                };
                match e {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'x' => hex(self, 2),
                    'u' => hex(self, 4),
                    'U' => hex(self, 8),
                    '\\' | '"' | '[' | ']' => e,
                    other => panic!("bad escape \\{other}"),
                }
            }
            fn name(&mut self) -> String {
                let st = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == '-')
                {
                    self.i += 1;
                }
                assert!(self.i > st, "name expected at {}", self.i);
                self.s[st..self.i].iter().collect()
            }
            fn num(&mut self) -> usize {
                let st = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                self.s[st..self.i]
                    .iter()
                    .collect::<String>()
                    .parse()
                    .expect("number")
            }
            fn alt(&mut self) -> Expr {
                let mut alts = vec![self.seq()];
                while self.peek() == Some('|') {
                    self.i += 1;
                    alts.push(self.seq());
                }
                if alts.len() == 1 {
                    alts.remove(0)
                } else {
                    Expr::Alt(alts)
                }
            }
            fn seq(&mut self) -> Expr {
                let mut items = Vec::new();
                loop {
                    self.ws();
                    let atom = match self.peek() {
                        Some('"') => {
                            self.i += 1;
                            let mut lit = Vec::new();
                            while self.peek() != Some('"') {
                                lit.push(self.char_esc());
                            }
                            self.i += 1;
                            Expr::Lit(lit)
                        }
                        Some('[') => {
                            self.i += 1;
                            let negated = self.peek() == Some('^');
                            if negated {
                                self.i += 1;
                            }
                            let mut ranges = Vec::new();
                            while self.peek() != Some(']') {
                                let a = self.char_esc();
                                let b = if self.peek() == Some('-') && self.s[self.i + 1] != ']' {
                                    self.i += 1;
                                    self.char_esc()
                                } else {
                                    a
                                };
                                ranges.push((a, b));
                            }
                            self.i += 1;
                            Expr::Class { negated, ranges }
                        }
                        Some('(') => {
                            self.i += 1;
                            let e = self.alt();
                            self.ws();
                            assert_eq!(self.peek(), Some(')'));
                            self.i += 1;
                            e
                        }
                        Some(c) if c.is_ascii_alphanumeric() => Expr::Ref(self.name()),
                        _ => break,
                    };
                    let atom = if self.peek() == Some('{') {
                        self.i += 1;
                        let m = self.num();
                        let n = if self.peek() == Some(',') {
                            self.i += 1;
                            self.num()
                        } else {
                            m
                        };
                        assert_eq!(self.peek(), Some('}'));
                        self.i += 1;
                        Expr::Rep(Box::new(atom), m, n)
                    } else {
                        atom
                    };
                    items.push(atom);
                }
                Expr::Seq(items)
            }
        }

        impl Grammar {
            pub fn parse(text: &str) -> Self {
                let mut rules = HashMap::new();
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let s: Vec<char> = line.chars().collect();
                    let mut p = P { s: &s, i: 0 };
                    let name = p.name();
                    p.ws();
                    let sep: String = s[p.i..p.i + 3].iter().collect();
                    assert_eq!(sep, "::=", "in {line}");
                    p.i += 3;
                    let e = p.alt();
                    assert_eq!(p.i, s.len(), "trailing text in {line}");
                    assert!(
                        rules.insert(name.clone(), e).is_none(),
                        "duplicate rule {name}"
                    );
                }
                Self { rules }
            }

            pub fn accepts(&self, input: &str) -> bool {
                let s: Vec<char> = input.chars().collect();
                let memo = RefCell::new(HashMap::new());
                self.ends(&Expr::Ref("root".into()), &s, 0, &memo)
                    .contains(&s.len())
            }

            /// Every end position of a match of `e` starting at `pos`.
            fn ends(
                &self,
                e: &Expr,
                s: &[char],
                pos: usize,
                memo: &RefCell<HashMap<(String, usize), BTreeSet<usize>>>,
            ) -> BTreeSet<usize> {
                match e {
                    Expr::Lit(l) => {
                        if s.len() >= pos + l.len() && s[pos..pos + l.len()] == l[..] {
                            BTreeSet::from([pos + l.len()])
                        } else {
                            BTreeSet::new()
                        }
                    }
                    Expr::Class { negated, ranges } => match s.get(pos) {
                        Some(c) if ranges.iter().any(|(a, b)| a <= c && c <= b) != *negated => {
                            BTreeSet::from([pos + 1])
                        }
                        _ => BTreeSet::new(),
                    },
                    Expr::Ref(name) => {
                        let key = (name.clone(), pos);
                        if let Some(r) = memo.borrow().get(&key) {
                            return r.clone();
                        }
                        let rule = self
                            .rules
                            .get(name)
                            .unwrap_or_else(|| panic!("no rule {name}"));
                        let r = self.ends(rule, s, pos, memo);
                        memo.borrow_mut().insert(key, r.clone());
                        r
                    }
                    Expr::Seq(items) => items.iter().fold(BTreeSet::from([pos]), |acc, it| {
                        acc.iter()
                            .flat_map(|&p| self.ends(it, s, p, memo))
                            .collect()
                    }),
                    Expr::Alt(alts) => alts
                        .iter()
                        .flat_map(|a| self.ends(a, s, pos, memo))
                        .collect(),
                    Expr::Rep(inner, m, n) => {
                        let mut out = BTreeSet::new();
                        let mut cur = BTreeSet::from([pos]);
                        for k in 0..=*n {
                            if k >= *m {
                                out.extend(cur.iter().copied());
                            }
                            if k == *n || cur.is_empty() {
                                break;
                            }
                            cur = cur
                                .iter()
                                .flat_map(|&p| self.ends(inner, s, p, memo))
                                .collect();
                        }
                        out
                    }
                }
            }
        }
    }
}
