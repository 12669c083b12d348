//! Maps a key path (`functions.hello.runtime`) back to a line and column in the source text.
//!
//! `serde_yaml::Value` keeps no positions, so semantic errors find their line by walking the
//! path through the block structure of the text: each line is split into its `- ` sequence
//! markers and an optional `key:`; a node's children are the items after it that sit further
//! right. Flow collections (`{method: get}`), anchors and merge keys are only partly understood;
//! the walk then stops at the deepest ancestor it found, which still points near the problem.

use std::fmt;

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    pub(crate) fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }
}

/// A path rendered the way users write it: `functions.hello.events[0]`.
pub(crate) struct PathDisplay<'a>(pub &'a [Seg]);

impl fmt::Display for PathDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Dash,
    Key(String),
    Other,
}

#[derive(Debug)]
struct Item {
    /// 0-based line index.
    line: usize,
    /// 0-based column (byte offset; the indentation before it is ASCII).
    col: usize,
    kind: Kind,
}

pub(crate) struct SourceMap {
    items: Vec<Item>,
    lines: Vec<String>,
}

impl SourceMap {
    pub(crate) fn new(text: &str) -> SourceMap {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut items = Vec::new();
        let mut in_block_scalar: Option<usize> = None;
        for (n, line) in lines.iter().enumerate() {
            let indent = line.len() - line.trim_start_matches(' ').len();
            let rest = &line[indent..];
            if rest.trim().is_empty() || rest.starts_with('#') {
                continue;
            }
            // Lines of a `|` / `>` block scalar are text, not structure.
            if let Some(parent) = in_block_scalar {
                if indent > parent {
                    continue;
                }
                in_block_scalar = None;
            }
            if indent == 0
                && (rest.starts_with("---") || rest.starts_with("...") || rest.starts_with('%'))
            {
                continue;
            }
            let first = items.len();
            scan_line(n, indent, rest, &mut items);
            if opens_block_scalar(rest) {
                // Its text must sit right of the key, or of the `-` for a sequence item.
                let owner = items[first..]
                    .iter()
                    .rev()
                    .find(|i| matches!(i.kind, Kind::Key(_) | Kind::Dash));
                in_block_scalar = Some(owner.map_or(indent, |i| i.col));
            }
        }
        SourceMap { items, lines }
    }

    /// Where `path` is written, or the deepest ancestor of it that could be found.
    pub(crate) fn locate(&self, path: &[Seg]) -> Option<Pos> {
        let mut region = 0..self.items.len();
        let mut best: Option<usize> = None;
        for seg in path {
            match self.entries(region, seg).next() {
                Some(i) => {
                    best = Some(i);
                    region = self.children(i);
                }
                None => return self.flow_fallback(best, seg),
            }
        }
        best.map(|i| self.pos(i))
    }

    /// The second `key:` among the entries of the mapping at `parent`: where a duplicate key
    /// error should point (serde_yaml reports the first).
    pub(crate) fn locate_duplicate(&self, parent: &[Seg], key: &str) -> Option<Pos> {
        let mut region = 0..self.items.len();
        for seg in parent {
            region = self.children(self.entries(region, seg).next()?);
        }
        self.entries(region, &Seg::key(key))
            .nth(1)
            .map(|i| self.pos(i))
    }

    /// Items in `region` that are entries of the node it holds and match `seg`: keys named so,
    /// or for an index the sequence item at that position.
    fn entries(
        &self,
        region: std::ops::Range<usize>,
        seg: &Seg,
    ) -> Box<dyn Iterator<Item = usize> + '_> {
        let Some(entry_col) = self
            .items
            .get(region.start)
            .filter(|_| !region.is_empty())
            .map(|i| i.col)
        else {
            return Box::new(std::iter::empty());
        };
        let entries = region.filter(move |&i| self.items[i].col == entry_col);
        match seg {
            Seg::Key(k) => {
                let k = k.clone();
                Box::new(
                    entries
                        .filter(move |&i| matches!(&self.items[i].kind, Kind::Key(x) if *x == k)),
                )
            }
            Seg::Index(n) => Box::new(
                entries
                    .filter(|&i| self.items[i].kind == Kind::Dash)
                    .skip(*n)
                    .take(1),
            ),
        }
    }

    fn pos(&self, i: usize) -> Pos {
        let item = &self.items[i];
        Pos {
            line: item.line + 1,
            column: item.col + 1,
        }
    }

    /// Item indices holding the value of item `i`.
    fn children(&self, i: usize) -> std::ops::Range<usize> {
        let parent = &self.items[i];
        let start = i + 1;
        // A block sequence may sit at the same indentation as the key that owns it.
        let same_col_seq = matches!(parent.kind, Kind::Key(_))
            && self
                .items
                .get(start)
                .is_some_and(|n| n.col == parent.col && n.kind == Kind::Dash);
        let mut end = start;
        while let Some(item) = self.items.get(end) {
            let inside = item.col > parent.col
                || (same_col_seq && item.col == parent.col && item.kind == Kind::Dash);
            if !inside {
                break;
            }
            end += 1;
        }
        start..end
    }

    /// The child was not found as a block entry: look for `key:` inside a flow mapping on the
    /// parent's line (`httpApi: {method: get, path: /x}`), else report the parent itself.
    fn flow_fallback(&self, best: Option<usize>, seg: &Seg) -> Option<Pos> {
        let i = best?;
        let parent = self.pos(i);
        if let Seg::Key(k) = seg {
            let line = &self.lines[self.items[i].line];
            let from = self.items[i].col.min(line.len());
            if let Some(col) = find_flow_key(&line[from..], k) {
                return Some(Pos {
                    line: parent.line,
                    column: from + col + 1,
                });
            }
        }
        Some(parent)
    }
}

/// Splits one line into its leading `- ` markers and the content after them.
fn scan_line(line: usize, indent: usize, rest: &str, items: &mut Vec<Item>) {
    let mut col = indent;
    let mut rest = rest;
    while rest == "-" || rest.starts_with("- ") || rest.starts_with("-\t") {
        items.push(Item {
            line,
            col,
            kind: Kind::Dash,
        });
        let after = &rest[1..];
        let trimmed = after.trim_start_matches([' ', '\t']);
        col += 1 + after.len() - trimmed.len();
        rest = trimmed;
    }
    if rest.is_empty() || rest.starts_with('#') {
        return;
    }
    let kind = parse_key(rest).map_or(Kind::Other, Kind::Key);
    items.push(Item { line, col, kind });
}

/// The key of a `key: value` line, unquoted; `None` when the content is not a mapping entry.
fn parse_key(s: &str) -> Option<String> {
    let (key, after) = match s.chars().next()? {
        '\'' => {
            let mut key = String::new();
            let mut chars = s[1..].char_indices();
            loop {
                let (i, c) = chars.next()?;
                if c == '\'' {
                    if s[1 + i + 1..].starts_with('\'') {
                        key.push('\'');
                        chars.next();
                        continue;
                    }
                    break (key, &s[1 + i + 1..]);
                }
                key.push(c);
            }
        }
        '"' => {
            let mut key = String::new();
            let mut chars = s[1..].char_indices();
            loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => key.push(chars.next()?.1),
                    '"' => break (key, &s[1 + i + 1..]),
                    _ => key.push(c),
                }
            }
        }
        '{' | '[' | '?' | '|' | '>' | '!' | '&' | '*' => return None,
        _ => {
            let bytes = s.as_bytes();
            let mut i = 0;
            loop {
                if i >= bytes.len() {
                    return None;
                }
                if bytes[i] == b'#' && i > 0 && bytes[i - 1] == b' ' {
                    return None;
                }
                if bytes[i] == b':'
                    && (i + 1 == bytes.len() || bytes[i + 1] == b' ' || bytes[i + 1] == b'\t')
                {
                    break (s[..i].trim_end().to_string(), &s[i..]);
                }
                i += 1;
            }
        }
    };
    let after = after.trim_start_matches([' ', '\t']);
    let is_entry =
        after.starts_with(':') && (after.len() == 1 || after[1..].starts_with([' ', '\t']));
    is_entry.then_some(key)
}

/// Does this content end in a `|` / `>` block scalar indicator (`key: |`, `- >-`)?
fn opens_block_scalar(rest: &str) -> bool {
    let value = match parse_key(rest) {
        Some(_) => rest.split_once(": ").map_or("", |(_, v)| v),
        None => rest.trim_start_matches(['-', ' ']),
    };
    let value = value.split(" #").next().unwrap_or("").trim();
    let mut chars = value.chars();
    matches!(chars.next(), Some('|' | '>')) && chars.all(|c| matches!(c, '-' | '+' | '0'..='9'))
}

/// Column (0-based, within `s`) of `key:` inside a flow mapping.
fn find_flow_key(s: &str, key: &str) -> Option<usize> {
    // An empty key matches everywhere without advancing: the loop below would never end.
    if key.is_empty() {
        return None;
    }
    let mut search = 0;
    while let Some(found) = s[search..].find(key) {
        let at = search + found;
        let before_ok = s[..at]
            .chars()
            .next_back()
            .is_some_and(|c| matches!(c, '{' | ',' | ' ' | '\'' | '"'));
        let after = s[at + key.len()..]
            .trim_start_matches(['\'', '"'])
            .trim_start();
        if before_ok && after.starts_with(':') {
            let quoted = s[..at].ends_with(['\'', '"']);
            return Some(if quoted { at - 1 } else { at });
        }
        search = at + key.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(spec: &str) -> Vec<Seg> {
        spec.split('.')
            .map(|p| match p.parse::<usize>() {
                Ok(n) => Seg::Index(n),
                Err(_) => Seg::Key(p.to_string()),
            })
            .collect()
    }

    fn at(text: &str, spec: &str) -> Option<(usize, usize)> {
        SourceMap::new(text)
            .locate(&path(spec))
            .map(|p| (p.line, p.column))
    }

    const DOC: &str = "\
# comment
service: app

provider:
  name: aws
  runtime: php-82
functions:
  hello:
    handler: index.php
    description: |
      runtime: not-a-key
      still text
    events:
    - httpApi: '*'
    - schedule:
        rate: rate(5 minutes)
        input: {a: 1}
    - http: {method: get, path: /x}
  'quoted-fn':
    handler: x.php
    layers:
      - ${bref:layer.php-82}
      - - nested
        - deeper
";

    #[test]
    fn finds_block_keys() {
        assert_eq!(at(DOC, "service"), Some((2, 1)));
        assert_eq!(at(DOC, "provider.runtime"), Some((6, 3)));
        assert_eq!(at(DOC, "functions.hello"), Some((8, 3)));
        assert_eq!(at(DOC, "functions.hello.handler"), Some((9, 5)));
        assert_eq!(at(DOC, "functions.quoted-fn.handler"), Some((20, 5)));
    }

    #[test]
    fn block_scalar_lines_are_not_keys() {
        assert_eq!(at(DOC, "functions.hello.runtime"), Some((8, 3)));
        assert_eq!(at(DOC, "functions.hello.events"), Some((13, 5)));
    }

    #[test]
    fn walks_sequences_at_the_same_indent_and_deeper() {
        assert_eq!(at(DOC, "functions.hello.events.0"), Some((14, 5)));
        assert_eq!(at(DOC, "functions.hello.events.0.httpApi"), Some((14, 7)));
        assert_eq!(
            at(DOC, "functions.hello.events.1.schedule.rate"),
            Some((16, 9))
        );
        assert_eq!(at(DOC, "functions.quoted-fn.layers.1"), Some((23, 7)));
        assert_eq!(at(DOC, "functions.quoted-fn.layers.1.1"), Some((24, 9)));
    }

    #[test]
    fn looks_inside_flow_mappings() {
        assert_eq!(
            at(DOC, "functions.hello.events.2.http.path"),
            Some((18, 27))
        );
        assert_eq!(
            at(DOC, "functions.hello.events.1.schedule.input.a"),
            Some((17, 17))
        );
    }

    #[test]
    fn falls_back_to_the_deepest_ancestor() {
        assert_eq!(at(DOC, "functions.hello.events.7"), Some((13, 5)));
        assert_eq!(at(DOC, "functions.nope"), Some((7, 1)));
        assert_eq!(at(DOC, "nope"), None);
    }

    #[test]
    fn parses_keys() {
        assert_eq!(parse_key("a: b"), Some("a".into()));
        assert_eq!(parse_key("a:"), Some("a".into()));
        assert_eq!(parse_key("arn:aws:sqs:x"), None);
        assert_eq!(parse_key("'a: b': c"), Some("a: b".into()));
        assert_eq!(parse_key("\"k\\\"q\" : v"), Some("k\"q".into()));
        assert_eq!(parse_key("'it''s': v"), Some("it's".into()));
        assert_eq!(parse_key("x # a: b"), None);
        assert_eq!(parse_key("{a: b}"), None);
    }

    #[test]
    fn renders_paths() {
        let p = vec![
            Seg::key("functions"),
            Seg::key("f"),
            Seg::key("events"),
            Seg::Index(2),
        ];
        assert_eq!(PathDisplay(&p).to_string(), "functions.f.events[2]");
    }

    #[test]
    fn empty_key_in_a_flow_fallback_ends() {
        // Found by the manifest_load fuzz target: `find_flow_key` looped forever on an empty
        // key, so this 231-byte file hung `tusk deploy`.
        assert_eq!(find_flow_key("{a: 1}", ""), None);
        assert_eq!(
            SourceMap::new("a: {b: 1}\n").locate(&[Seg::key("a"), Seg::key("")]),
            Some(Pos { line: 1, column: 1 })
        );
        let hung = "service: my-app\n\nprovider:\n  name: aws\n  region: eu-west-3\n  runtiee: php-82\n  environment:\n    APP_ENV: prod\n    LOG_Lpatterns:\n    -99ns:\n    -9999999)'!node_moironment:\n    !dules/edul   runtime: php-82-console\n    timeout: 120\n";
        let _ = crate::load_str("serverless.yml", hung, &crate::LoadOptions::default());
    }
}
