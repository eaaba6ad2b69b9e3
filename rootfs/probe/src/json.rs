//! A minimal JSON writer: the probe has no dependencies beyond libc, and its report is
//! write-only, so a string builder with correct escaping is all it needs.

/// Builds one JSON document into a `String`.
pub struct Json {
    out: String,
    /// Per open container: whether the next member needs a leading comma.
    need_comma: Vec<bool>,
}

impl Json {
    pub fn new() -> Self {
        Json {
            out: String::new(),
            need_comma: Vec::new(),
        }
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn sep(&mut self) {
        if let Some(first) = self.need_comma.last_mut() {
            if *first {
                self.out.push(',');
            }
            *first = true;
        }
    }

    /// Starts an object member: `"key":`. The caller then writes exactly one value.
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.sep();
        push_str(&mut self.out, k);
        self.out.push(':');
        // The value that follows must not add another comma.
        if let Some(first) = self.need_comma.last_mut() {
            *first = false;
        }
        self
    }

    /// Ends a value written after `key`, restoring the comma state.
    fn value_done(&mut self) {
        if let Some(first) = self.need_comma.last_mut() {
            *first = true;
        }
    }

    pub fn begin_object(&mut self) -> &mut Self {
        self.sep();
        self.out.push('{');
        self.need_comma.push(false);
        self
    }

    pub fn end_object(&mut self) -> &mut Self {
        self.need_comma.pop();
        self.out.push('}');
        self.value_done();
        self
    }

    pub fn begin_array(&mut self) -> &mut Self {
        self.sep();
        self.out.push('[');
        self.need_comma.push(false);
        self
    }

    pub fn end_array(&mut self) -> &mut Self {
        self.need_comma.pop();
        self.out.push(']');
        self.value_done();
        self
    }

    pub fn string(&mut self, s: &str) -> &mut Self {
        self.sep();
        push_str(&mut self.out, s);
        self.value_done();
        self
    }

    pub fn opt_string(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.string(s),
            None => self.null(),
        }
    }

    pub fn number<N: std::fmt::Display>(&mut self, n: N) -> &mut Self {
        self.sep();
        self.out.push_str(&n.to_string());
        self.value_done();
        self
    }

    pub fn boolean(&mut self, b: bool) -> &mut Self {
        self.sep();
        self.out.push_str(if b { "true" } else { "false" });
        self.value_done();
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.sep();
        self.out.push_str("null");
        self.value_done();
        self
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::Json;

    #[test]
    fn nested_members_get_commas_in_the_right_places() {
        let mut j = Json::new();
        j.begin_object();
        j.key("a").number(1);
        j.key("b").begin_array().string("x\"y").null().end_array();
        j.key("c")
            .begin_object()
            .key("d")
            .boolean(true)
            .end_object();
        j.end_object();
        assert_eq!(j.finish(), r#"{"a":1,"b":["x\"y",null],"c":{"d":true}}"#);
    }
}
