//! Table bodies and lists rendered as one escaped HTML string and set with
//! `inner_html`. Why: every `view!` row is a type of its own, and tachys
//! compiles build, hydrate and rebuild code for each (plus one reactive
//! effect per live cell), which made the tables most of the pages' wasm.
//! These parts are replaced wholesale on every update anyway, so a string
//! costs one effect per table and no per-row code. Links inside still use
//! client-side routing: the router listens for clicks on the document.
//!
//! Every text and attribute value goes through [`escape`]: mailing names,
//! reasons and addresses come from webhooks and must never become markup.

use super::format;
use crate::protocol::{Health, MailingClass};
use std::fmt::Write;

/// Appends `s` with `&`, `<`, `>`, `"` and `'` escaped, safe both as text
/// and inside a double- or single-quoted attribute value.
pub fn escape(out: &mut String, s: &str) {
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&s[last..]);
}

/// An HTML fragment under construction.
#[derive(Default, Debug)]
pub struct Markup(String);

impl Markup {
    pub fn new() -> Markup {
        Markup::default()
    }

    /// `<tag a="v" …>`; values are escaped, names are the caller's literals.
    pub fn open(&mut self, tag: &'static str, attrs: &[(&'static str, &str)]) -> &mut Self {
        self.0.push('<');
        self.0.push_str(tag);
        for (name, value) in attrs {
            let _ = write!(self.0, " {name}=\"");
            escape(&mut self.0, value);
            self.0.push('"');
        }
        self.0.push('>');
        self
    }

    pub fn close(&mut self, tag: &'static str) -> &mut Self {
        let _ = write!(self.0, "</{tag}>");
        self
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        escape(&mut self.0, s);
        self
    }

    /// `<tag attrs>text</tag>`.
    pub fn el(
        &mut self,
        tag: &'static str,
        attrs: &[(&'static str, &str)],
        text: &str,
    ) -> &mut Self {
        self.open(tag, attrs).text(text).close(tag)
    }

    /// A plain cell.
    pub fn td(&mut self, text: &str) -> &mut Self {
        self.el("td", &[], text)
    }

    /// A right-aligned number cell.
    pub fn num(&mut self, text: &str) -> &mut Self {
        self.el("td", &[("class", "num")], text)
    }

    /// A row header (`<th scope="row">`) with plain text.
    pub fn th(&mut self, text: &str) -> &mut Self {
        self.el("th", &[("scope", "row")], text)
    }

    /// `<thead>` with one column header per name.
    pub fn thead(&mut self, columns: &[&str]) -> &mut Self {
        self.open("thead", &[]).open("tr", &[]);
        for c in columns {
            self.el("th", &[("scope", "col")], c);
        }
        self.close("tr").close("thead")
    }

    /// A button for a delegated click handler: the `action` attribute
    /// (`data-…`) with `value` is what [`clicked`] reads back.
    pub fn data_button(&mut self, action: &'static str, value: &str, label: &str) -> &mut Self {
        self.el("button", &[("type", "button"), (action, value)], label)
    }

    /// A link to a mailing's page, named by its name or else its id.
    pub fn mailing_link(&mut self, id: &str, name: Option<&str>) -> &mut Self {
        let href = format!("/mailings/{}", urlencode(id));
        self.el("a", &[("href", &href)], name.unwrap_or(id))
    }

    /// The class badge of a mailing.
    pub fn class_badge(&mut self, c: MailingClass) -> &mut Self {
        let (cls, text) = super::class_badge_parts(c);
        self.el("span", &[("class", cls)], text)
    }

    /// A traffic-light dot and its word.
    pub fn health(&mut self, h: Health) -> &mut Self {
        let (cls, text) = health_parts(h);
        self.el("span", &[("class", &format!("dot {cls}"))], "")
            .text(text)
    }

    /// A sparkline of sends per minute as inline SVG (no script needed).
    pub fn sparkline(&mut self, values: &[u32]) -> &mut Self {
        let label = format!(
            "{} sends in the last 30 minutes",
            values.iter().map(|v| *v as u64).sum::<u64>()
        );
        self.open(
            "svg",
            &[
                ("class", "spark"),
                ("viewBox", "0 0 100 20"),
                ("preserveAspectRatio", "none"),
                ("role", "img"),
                ("aria-label", &label),
            ],
        )
        .open(
            "path",
            &[
                ("d", &super::spark_path(values)),
                ("fill", "none"),
                ("stroke", "currentColor"),
                ("stroke-width", "1.5"),
                ("vector-effect", "non-scaling-stroke"),
            ],
        )
        .close("path")
        .close("svg")
    }

    /// A big number with a label, a note underneath and, for health
    /// figures, the tile coloured amber or red.
    pub fn tile(
        &mut self,
        label: &str,
        id: &str,
        value: &str,
        note: &str,
        health: Option<Health>,
    ) -> &mut Self {
        let class = match health {
            Some(Health::Critical) => "tile critical",
            Some(Health::Warning) => "tile warning",
            _ => "tile",
        };
        self.open(
            "div",
            &[("class", class), ("role", "group"), ("aria-label", label)],
        )
        .el("div", &[("class", "tile-label")], label)
        .el(
            "div",
            &[("class", "tile-value"), ("data-testid", id)],
            value,
        )
        .el("div", &[("class", "tile-note")], note)
        .close("div")
    }

    /// A wall figure: a huge number over its caption.
    pub fn figure(&mut self, value: &str, caption: &str, id: Option<&str>) -> &mut Self {
        self.open("div", &[]);
        match id {
            Some(id) => self.el("span", &[("class", "big"), ("data-testid", id)], value),
            None => self.el("span", &[("class", "big")], value),
        };
        self.el("span", &[], caption).close("div")
    }

    /// A labelled horizontal bar (funnel, delay histogram): `pct` of the
    /// width, then the count and an optional share.
    pub fn bar(
        &mut self,
        label: &str,
        pct: f64,
        count: &str,
        count_id: Option<&str>,
        share: Option<&str>,
    ) -> &mut Self {
        let width = format!("width:{:.1}%", pct.clamp(0.0, 100.0));
        self.open("div", &[("class", "funnel-row")])
            .el("span", &[("class", "funnel-label")], label)
            .open("span", &[("class", "funnel-bar")])
            .el("span", &[("style", &width)], "")
            .close("span");
        match count_id {
            Some(id) => self.el("span", &[("class", "num"), ("data-testid", id)], count),
            None => self.el("span", &[("class", "num")], count),
        };
        if let Some(s) = share {
            self.el("span", &[("class", "num muted")], s);
        }
        self.close("div")
    }

    /// The markup so far, leaving the builder empty.
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

/// The value of `attr` on the element clicked (or its nearest ancestor
/// that has it), for one click handler on a markup table: buttons carry
/// `data-…` attributes instead of handlers of their own.
pub fn clicked(ev: &leptos::ev::MouseEvent, attr: &str) -> Option<String> {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let target = ev.target()?.dyn_into::<web_sys::Element>().ok()?;
        target
            .closest(&format!("[{attr}]"))
            .ok()??
            .get_attribute(attr)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (ev, attr);
        None
    }
}

/// The CSS class and the word for a health state.
pub fn health_parts(h: Health) -> (&'static str, &'static str) {
    match h {
        Health::Ok => ("ok", "OK"),
        Health::Warning => ("warning", "WARNING"),
        Health::Critical => ("critical", "CRITICAL"),
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for ids
/// placed in a URL path or query.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// "—" for a missing duration, else the duration.
pub fn dur_or_dash(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".into(), format::dur_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        let mut m = Markup::new();
        m.el(
            "td",
            &[("title", "a\"b' <x>")],
            "<script>alert('&')</script>",
        );
        assert_eq!(
            m.take(),
            "<td title=\"a&quot;b&#39; &lt;x&gt;\">&lt;script&gt;alert(&#39;&amp;&#39;)&lt;/script&gt;</td>"
        );
    }

    #[test]
    fn unicode_passes_through() {
        let mut s = String::new();
        escape(&mut s, "Grüße ≤ 5 s — ok");
        assert_eq!(s, "Grüße ≤ 5 s — ok");
    }

    #[test]
    fn mailing_links_encode_the_id_and_escape_the_name() {
        let mut m = Markup::new();
        m.mailing_link("a/b c", Some("<b>Sale</b>"));
        assert_eq!(
            m.take(),
            "<a href=\"/mailings/a%2Fb%20c\">&lt;b&gt;Sale&lt;/b&gt;</a>"
        );
        let mut m = Markup::new();
        m.mailing_link("42", None);
        assert_eq!(m.take(), "<a href=\"/mailings/42\">42</a>");
    }

    #[test]
    fn tiles_take_the_colour_of_their_health() {
        let mut m = Markup::new();
        m.tile(
            "Queue depth",
            "tile-queue",
            "12",
            "oldest 2m 10s",
            Some(Health::Critical),
        );
        assert_eq!(
            m.take(),
            "<div class=\"tile critical\" role=\"group\" aria-label=\"Queue depth\">\
             <div class=\"tile-label\">Queue depth</div>\
             <div class=\"tile-value\" data-testid=\"tile-queue\">12</div>\
             <div class=\"tile-note\">oldest 2m 10s</div></div>"
        );
    }

    #[test]
    fn bars_clamp_their_width() {
        let mut m = Markup::new();
        m.bar("Sent", 250.0, "3", Some("funnel-sent"), Some("100 %"));
        let s = m.take();
        assert!(s.contains("width:100.0%"), "{s}");
        assert!(s.contains("data-testid=\"funnel-sent\">3<"), "{s}");
        assert!(s.contains("num muted\">100 %<"), "{s}");
    }
}
